/*
 * The seed's client/server I/O story, end to end, with the server in its
 * own process: the client creates a container, allocates the frames the
 * server needs, shares it; the server imports, locks, writes its data and
 * unlocks; the client unshares and maps and finds the data. Then again with
 * the server killed half way: the client's data and memory are intact and
 * the lock is gone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define FRAMES 16

static void xwrite(int fd, const void *p, size_t n)
{
	if (write(fd, p, n) != (ssize_t)n)
		_exit(90);
}

static void xread(int fd, void *p, size_t n)
{
	if (read(fd, p, n) != (ssize_t)n)
		_exit(91);
}

/*
 * The file server: tells its task id, receives a token, locks the
 * container, fills frames with (frame + 1) bytes. With `stall_after`, it
 * reports after that many frames and waits to be killed.
 */
static void server_main(int to_client, int from_client, int stall_after)
{
	uint8_t buf[PM_FRAME_SIZE];
	pm_cap_token_t tok;
	container_t ref;
	pm_task_t self;
	pm_t *pm;

	/* A forked child of a threaded process starts no threads of its own
	 * (ThreadSanitizer cannot follow that); the server maps nothing, so
	 * it has no use for the library's fault thread anyway. */
	setenv("PM_NO_USERFAULTFD", "1", 1);
	if (pm_connect(test_pmd.socket, &pm))
		_exit(1);
	pm_self(pm, &self);
	xwrite(to_client, &self, sizeof(self));
	xread(from_client, &tok, sizeof(tok));
	if (pm_cap_import(pm, &tok, &ref) || pm_container_lock(pm, ref, 5000))
		_exit(2);
	for (int f = 0; f < FRAMES; f++) {
		if (f == stall_after) {
			xwrite(to_client, "s", 1);
			pause(); /* killed here */
		}
		memset(buf, f + 1, sizeof(buf));
		if (pm_container_write(pm, ref, (frame_t)f, 0, buf, sizeof(buf)))
			_exit(3);
	}
	if (pm_container_unlock(pm, ref))
		_exit(4);
	xwrite(to_client, "d", 1);
	pm_disconnect(pm);
	_exit(0);
}

static void run_story(int stall_after)
{
	int up[2], down[2], status;
	pm_t *client = test_connect(&test_pmd);
	struct pm_container_stat cs;
	struct pm_task_stat ts;
	pm_cap_token_t tok;
	container_t c, weak;
	pm_task_t server;
	int count = FRAMES;
	uint8_t *map;
	pid_t pid;
	char note;

	assert_int_equal(pm_container_create(client, &c), 0);
	assert_int_equal(pm_container_allocate(client, c, 0, &count, 0), 0);
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		server_main(up[1], down[0], stall_after);

	assert_int_equal(read(up[0], &server, sizeof(server)), sizeof(server));
	assert_int_equal(pm_container_share(client, c, server, &weak), 0);
	assert_int_equal(pm_cap_export(client, weak, &tok), 0);
	assert_int_equal(write(down[1], &tok, sizeof(tok)), sizeof(tok));
	assert_int_equal(read(up[0], &note, 1), 1);

	if (stall_after >= 0) {
		assert_int_equal(note, 's');
		/* Under the server's lock the client waits... */
		assert_int_equal(pm_container_unshare(client, c, server), EBUSY);
		kill(pid, SIGKILL);
	} else {
		assert_int_equal(note, 'd');
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (stall_after < 0)
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* ...and once the server is done or dead, unshare succeeds (retry
	 * while the pmd notices the death). */
	error_t err = EBUSY;
	for (int i = 0; i < 300 && err == EBUSY; i++) {
		err = pm_container_unshare(client, c, server);
		if (err == EBUSY)
			usleep(10000);
	}
	assert_int_equal(err, 0);
	assert_int_equal(pm_container_stat(client, c, &cs), 0);
	assert_int_equal(cs.locked_ms_left, 0);
	assert_int_equal(cs.frames, FRAMES); /* the server only changed bits */

	assert_int_equal(pm_container_map(client, c, 0, FRAMES, CONT_MAP_READ,
					  (void **)&map, NULL), 0);
	int written = stall_after < 0 ? FRAMES : stall_after;
	for (int f = 0; f < FRAMES; f++) {
		uint8_t want = f < written ? (uint8_t)(f + 1) : 0;
		for (size_t i = 0; i < PM_FRAME_SIZE; i += 512)
			assert_int_equal(map[(size_t)f * PM_FRAME_SIZE + i], want);
	}
	pm_container_unmap(client, map, FRAMES);
	/* The client paid for the memory, and only the client. */
	assert_int_equal(pm_task_stat(client, &ts), 0);
	assert_int_equal(ts.allocated, FRAMES);
	test_check(client);
	assert_int_equal(pm_container_destroy(client, c), 0);
	pm_disconnect(client);
	close(up[0]);
	close(up[1]);
	close(down[0]);
	close(down[1]);
}

static void client_server_io(void **state)
{
	run_story(-1);
}

static void server_killed_half_way(void **state)
{
	run_story(FRAMES / 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(client_server_io),
		cmocka_unit_test(server_killed_half_way),
	};
	signal(SIGPIPE, SIG_IGN);
	test_pmd_args = (const char *const[]){ "--memory", "64M",
		"--max-lock-ms", "5000", NULL };
	return cmocka_run_group_tests(tests, test_group_setup,
				      test_group_teardown);
}
