/*
 * pm-span - a container that spans three nodes, shown step by step.
 *
 *   pm-span SOCKET1 SOCKET2 SOCKET3
 *
 * An owner task on node 1 makes a container whose frames live on node 3;
 * a server task on node 2 imports a token for it and reads and writes it
 * through its own pmd (node 2 forwards to the home, node 1, which reaches
 * the frames on node 3 by RDMA); the owner then maps the frames, which
 * brings them home, and the server maps them, which takes them to node 2
 * (the owner's mapping follows them back). Then a container interleaved
 * across the three nodes. Every step checks what it shows: a wrong byte
 * or count ends the program with status 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pm/pm.h>

static void check(error_t err, const char *what)
{
	if (err) {
		fprintf(stderr, "pm-span: %s: %s\n", what, strerror(err));
		exit(1);
	}
}

/* What a step saw against what it should have. */
static void expect(const char *got, const char *want, const char *what)
{
	if (strcmp(got, want)) {
		fprintf(stderr, "pm-span: %s: \"%s\", not \"%s\"\n", what, got,
			want);
		exit(1);
	}
}

static void expect_n(unsigned long long got, unsigned long long want,
		     const char *what)
{
	if (got != want) {
		fprintf(stderr, "pm-span: %s: %llu, not %llu\n", what, got, want);
		exit(1);
	}
}

static void free_frames(pm_t *pm, const char *who)
{
	struct pm_node_info n[8];
	int count = 8;

	check(pm_nodes(pm, n, &count), "pm_nodes");
	printf("  %s sees:", who);
	for (int i = 0; i < count && i < 8; i++)
		printf(" node %u %s (%llu frames free)", n[i].id,
		       n[i].state == PM_NODE_UP ? "up" : "not up",
		       (unsigned long long)n[i].frames_free);
	printf("\n");
}

int main(int argc, char **argv)
{
	pm_t *owner, *server;
	container_t c, weak, ref;
	struct pm_container_stat st;
	pm_cap_token_t tok;
	pm_task_t sid;
	char buf[64] = { 0 };
	int n = 8;
	void *m;

	if (argc != 4) {
		fprintf(stderr, "usage: pm-span SOCKET1 SOCKET2 SOCKET3\n");
		return 2;
	}
	check(pm_connect(argv[1], &owner), "connect to node 1");
	check(pm_connect(argv[2], &server), "connect to node 2");

	check(pm_container_create(owner, &c), "create");
	check(pm_container_set_policy(owner, c, PM_PLACE_NODE, 3), "set_policy");
	check(pm_container_allocate(owner, c, 0, &n, 0), "allocate");
	check(pm_container_stat(owner, c, &st), "stat");
	printf("owner on node 1: container homed on node %u, %llu frames, "
	       "%llu of them on another node\n", st.home,
	       (unsigned long long)st.frames, (unsigned long long)st.remote);
	expect_n(st.remote, 8, "frames on another node");
	free_frames(owner, "node 1");
	check(pm_container_write(owner, c, 5, 0, "hello from node 1", 18),
	      "write");
	printf("owner wrote frame 5 (bytes go to node 3 by RDMA)\n");

	check(pm_self(server, &sid), "self");
	check(pm_container_share(owner, c, sid, &weak), "share");
	check(pm_cap_export(owner, weak, &tok), "export");
	check(pm_cap_import(server, &tok, &ref), "import on node 2");
	check(pm_container_read(server, ref, 5, 0, buf, 18), "read on node 2");
	printf("server on node 2 read frame 5 through its own pmd: \"%s\"\n",
	       buf);
	expect(buf, "hello from node 1", "the server's read");
	check(pm_container_write(server, ref, 6, 0, "and back from node 2", 21),
	      "write on node 2");
	check(pm_container_lock(server, ref, 1000), "lock");
	{
		error_t err = pm_container_deallocate(owner, c, 7, 1);

		printf("server locked the container: the owner's deallocate "
		       "says \"%s\"\n", strerror(err));
		expect_n((unsigned)err, EBUSY, "deallocate under a lock");
	}
	check(pm_container_unlock(server, ref), "unlock");

	check(pm_container_map(owner, c, 0, 8, CONT_MAP_READ, &m, NULL), "map");
	check(pm_container_stat(owner, c, &st), "stat");
	printf("owner mapped the 8 frames: they came home (%llu still on "
	       "another node); frame 6 reads \"%s\"\n",
	       (unsigned long long)st.remote, (char *)m + 6 * PM_FRAME_SIZE);
	expect_n(st.remote, 0, "frames still away after the owner's map");
	expect((char *)m + 6 * PM_FRAME_SIZE, "and back from node 2",
	       "the owner's mapping of frame 6");

	/* The server maps them too: they move to node 2, where its stores
	 * land; the owner's mapping follows them home when it reads. */
	void *sm;
	check(pm_container_map(server, ref, 0, 8, CONT_MAP_READ | CONT_MAP_WRITE,
			       &sm, NULL), "map on node 2");
	check(pm_container_stat(owner, c, &st), "stat");
	printf("server on node 2 mapped them: %llu frames now live on node 2 "
	       "(the home recorded the move)\n", (unsigned long long)st.remote);
	expect_n(st.remote, 8, "frames on node 2 after its map");
	strcpy((char *)sm + 2 * PM_FRAME_SIZE, "stored on node 2");
	printf("server stored through its mapping; the owner's mapping on "
	       "node 1 reads \"%s\"\n", (char *)m + 2 * PM_FRAME_SIZE);
	/* (Registered memory whose pages were replaced lost this store.) */
	expect((char *)m + 2 * PM_FRAME_SIZE, "stored on node 2",
	       "the owner's mapping of the server's store");
	check(pm_container_unmap(server, sm, 8), "unmap on node 2");
	check(pm_container_unshare(owner, c, sid), "unshare");
	{
		error_t err = pm_container_read(server, ref, 5, 0, buf, 1);

		printf("owner unshared: the server's read now says \"%s\"\n",
		       strerror(err));
		expect_n((unsigned)err, ESTALE, "a read after the unshare");
	}
	check(pm_container_destroy(owner, c), "destroy");

	/* Interleaved: frame f on the (f mod 3)-th node; one write across
	 * all three comes back intact. */
	{
		static uint8_t out[9 * PM_FRAME_SIZE], in[9 * PM_FRAME_SIZE];
		container_t il;

		n = 9;
		for (size_t i = 0; i < sizeof(out); i++)
			out[i] = (uint8_t)(i * 7 + 1);
		check(pm_container_create(owner, &il), "create");
		check(pm_container_set_policy(owner, il, PM_PLACE_INTERLEAVE, 0),
		      "set_policy interleave");
		check(pm_container_allocate(owner, il, 0, &n, 0), "allocate");
		check(pm_container_stat(owner, il, &st), "stat");
		printf("interleaved container: %llu frames, %llu here and %llu "
		       "on nodes 2 and 3\n", (unsigned long long)st.frames,
		       (unsigned long long)st.resident,
		       (unsigned long long)st.remote);
		check(pm_container_write(owner, il, 0, 0, out, sizeof(out)),
		      "write across nodes");
		check(pm_container_read(owner, il, 0, 0, in, sizeof(in)),
		      "read across nodes");
		if (memcmp(in, out, sizeof(in))) {
			fprintf(stderr, "pm-span: the interleaved frames read "
				"back different bytes\n");
			return 1;
		}
		printf("one 36 KiB write across the three nodes reads back "
		       "intact\n");
		check(pm_container_destroy(owner, il), "destroy");
	}
	pm_disconnect(server);
	pm_disconnect(owner);
	return 0;
}
