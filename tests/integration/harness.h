/*
 * harness.h - starts and stops real pmd processes for integration tests.
 *
 * Each daemon runs in its own temporary directory with its stderr captured
 * to a log file there. Stopping checks that it exited 0 after SIGTERM (so a
 * sanitizer report or a leak found at exit fails the test) and that its log
 * holds no error line the test did not declare as expected.
 */
#ifndef PMD_TEST_HARNESS_H
#define PMD_TEST_HARNESS_H

#include <stdbool.h>
#include <sys/types.h>

#include <pm/pm.h>

struct pmd_proc {
	pid_t pid;
	char dir[256];       /* temporary directory */
	char socket[300];    /* its socket */
	char log[300];       /* its stderr */
	bool errors_expected;/* error lines in the log are part of the test */
};

/* Starts pmd with the extra arguments (NULL-terminated); waits until it is
 * ready. Fails the test if it does not start. */
void pmd_proc_start(struct pmd_proc *p, const char *const *args);
/* SIGTERM, wait, check exit status 0 and the log; removes the directory. */
void pmd_proc_stop(struct pmd_proc *p);

/* Runs pmd with args to completion (for bad-option tests): returns its exit
 * status, and its stderr in err (up to len bytes). */
int pmd_run_to_exit(const char *const *args, char *err, size_t len);

/* How many lines of p's log contain text; each is printed. */
unsigned test_log_grep(const struct pmd_proc *p, const char *text);

pm_t *test_connect(const struct pmd_proc *p);
/* A session whose mappings follow moved frames; skips the test (saying
 * why) when the kernel gives this process no userfaultfd. pm is
 * disconnected then. */
pm_t *test_follower(pm_t *pm);
/* A bare connection to p's socket, for tests of the wire protocol. */
int test_raw_connect(const struct pmd_proc *p);
/* One request of type with body (len bytes) on a bare connection: the
 * reply's wire status; a reply body of exactly out_len bytes is copied
 * to out when the status is OK. */
uint32_t test_raw_call(int fd, uint16_t type, const void *body, uint32_t len,
		       void *out, uint32_t out_len);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t test_ms_now(void);

/* Asserts the pmd's accounting invariant and returns the debug stat. */
struct pm_debug_stat test_check(pm_t *pm);
/* A metric's value in the pmd's text (0 when absent). */
uint64_t test_metric(pm_t *pm, const char *name);

/* Memory pressure: frame f's bytes in round `round` of a test; a
 * container of pm with frames 0..g-1 guaranteed and g..g+e-1 extra, each
 * holding its pattern of round 0; and frames [from, to) of c hold their
 * patterns of round (fails the test, naming the frame, if not). */
void test_pattern(frame_t f, uint32_t round, uint8_t *buf);
container_t test_fill(pm_t *pm, uint32_t g, uint32_t e);
void test_intact(pm_t *pm, container_t c, frame_t from, frame_t to,
		 uint32_t round);
/* A thread storing 1, 2, 3... into the first word of frames 0..n-1
 * (n <= 64) of a mapping m of container c, in turn, while the pmd moves
 * them; test_storer_end stops it and checks, through pm, that each
 * frame's first word is the last number stored there (no store lost). */
struct test_storer;
struct test_storer *test_storer_start(void *m, uint32_t n);
void test_storer_end(struct test_storer *w, pm_t *pm, container_t c);

/*
 * The daemon a group of tests shares: a test's main sets test_pmd_args,
 * then runs its group with test_group_setup and test_group_teardown,
 * which start and stop test_pmd with those arguments.
 */
extern struct pmd_proc test_pmd;
extern const char *const *test_pmd_args;
int test_group_setup(void **state);
int test_group_teardown(void **state);
/* Nothing is left on p but the checker's session: no other task, no
 * container, frame or segment (sessions that just hung up may still be
 * in the pmd's queue: it waits up to 3 s for them), and the books
 * balance. */
void test_clean(const struct pmd_proc *p);
/* test_clean(&test_pmd), as a test's teardown. */
int test_clean_teardown(void **state);

#endif
