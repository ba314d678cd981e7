/*
 * chaos.c - the task and the checker of the chaos test (test_chaos.sh).
 *
 *   chaos work SOCKET CALM STABLE
 *       A task on the pmd at SOCKET until the file CALM exists: it keeps
 *       containers homed there with frames on every node (node policy),
 *       writes them, reads them back, maps and stores through the
 *       mappings of its own node's frames, and reconnects when its pmd
 *       dies. STABLE lists the nodes the driver leaves alone (e.g. "1").
 *       Every call must end within HANG_MS; a call that fails must fail
 *       clearly (an error a node's loss explains); no read may ever show
 *       bytes that are not the frame's. Once CALM exists every
 *       acknowledged write is read back: on a frame whose home and node
 *       are both stable it must be there, exactly; elsewhere it is there
 *       or fails clearly. Exit 0 when all held; 1 after saying what did
 *       not.
 *   chaos check SOCKET...
 *       Every node's accounting check holds, no node holds anything for
 *       a task (the checker's session aside), and the nodes' books of
 *       loans are empty (waits for them to settle, HANG_MS at most).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pm/pm.h>

#define NODES    3
#define FRAMES   24            /* a container's frames */
#define MAPPED   8             /* of the local one, mapped */
#define HANG_MS  10000         /* longest a call may take */
#define SIZE     64            /* bytes written a time */

static unsigned failures;
static uint64_t errs[256];            /* clear errors seen, by errno */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failed(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "chaos: FAIL: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	failures++;
}

/* An error that a node's loss, a pause or a cut link explains. */
static bool clear_error(error_t err)
{
	return err == EIO || err == ENODEV || err == ESTALE ||
	       err == ETIMEDOUT || err == ENOMEM || err == EBUSY ||
	       err == EAGAIN || err == ECONNRESET || err == ENOENT;
}

/* The bytes of write seq to frame f of the container on node k. */
static void pattern(uint8_t *b, unsigned k, uint64_t f, uint64_t seq)
{
	for (unsigned i = 0; i < SIZE; i++)
		b[i] = (uint8_t)(seq * 131 + f * 7 + k * 29 + i);
	memcpy(b, &seq, sizeof(seq));
}

struct worker {
	const char *socket, *calm;
	bool stable[NODES + 1];
	pm_t *pm;
	pm_node_t self;
	container_t c[NODES + 1];
	int n[NODES + 1];            /* frames allocated */
	uint64_t known[NODES + 1][FRAMES]; /* last acknowledged seq; 0: none
	                              * or unknown (a write that failed) */
	struct hist {                /* each frame's last writes, for a
	                              * failure's story */
		uint64_t seq, ms;
		int err;
	} hist[NODES + 1][FRAMES][8];
	unsigned nhist[NODES + 1][FRAMES];
	uint64_t t0;
	uint8_t *map;                /* MAPPED frames of c[self], or NULL */
	uint64_t next_make_ms;       /* when to try again what failed */
	uint64_t seq;
	uint64_t writes, write_errs, reads, read_errs, stores, reconnects;
	uint64_t renewed, verified;
};

static void hist_add(struct worker *w, unsigned k, unsigned f, uint64_t seq,
		     int err)
{
	w->hist[k][f][w->nhist[k][f]++ % 8] = (struct hist){ .seq = seq,
		.ms = now_ms() - w->t0, .err = err };
}

static void hist_print(const struct worker *w, unsigned k, unsigned f)
{
	unsigned n = w->nhist[k][f];

	for (unsigned i = n > 8 ? n - 8 : 0; i < n; i++) {
		const struct hist *h = &w->hist[k][f][i % 8];
		fprintf(stderr, "chaos:   at %lu ms: write %lu: %s\n",
			(unsigned long)h->ms, (unsigned long)h->seq,
			h->err ? strerror(h->err) : "acknowledged");
	}
}

/* A call's time: past HANG_MS it hung. */
static void timed(uint64_t t0, const char *what)
{
	uint64_t dt = now_ms() - t0;

	if (dt > HANG_MS)
		failed("%s took %lu ms", what, (unsigned long)dt);
}

static void session_end(struct worker *w)
{
	if (w->pm)
		pm_disconnect(w->pm);
	w->pm = NULL;
	w->map = NULL;
	memset(w->c, 0, sizeof(w->c));
	memset(w->n, 0, sizeof(w->n));
	memset(w->known, 0, sizeof(w->known));
}

/* An error: clear ones are counted, others fail the test; a pmd gone
 * ends the session (the next step connects again). */
static void error_seen(struct worker *w, error_t err, const char *what)
{
	if (!clear_error(err))
		failed("%s: %s", what, strerror(err));
	else if (err < 256)
		errs[err]++;
	if (err == ECONNRESET)
		session_end(w);
}

/* Containers homed here, one with frames on each node (what failed is
 * tried again every 100 ms). */
static void containers_make(struct worker *w)
{
	if (now_ms() < w->next_make_ms)
		return;
	w->next_make_ms = now_ms() + 100;
	for (unsigned k = 1; k <= NODES; k++) {
		uint64_t t0 = now_ms();
		error_t err;
		int n = FRAMES;

		if (!w->pm || w->n[k])
			continue;
		if (!w->c[k]) {
			err = pm_container_create(w->pm, &w->c[k]);
			if (!err && k != w->self)
				err = pm_container_set_policy(w->pm, w->c[k],
							      PM_PLACE_NODE,
							      (pm_node_t)k);
			if (err) {
				error_seen(w, err, "create");
				if (w->pm && w->c[k])
					pm_container_destroy(w->pm, w->c[k]);
				if (w->pm)
					w->c[k] = 0;
				continue;
			}
		}
		err = pm_container_allocate(w->pm, w->c[k], 0, &n,
					    CONT_ALLOC_PARTIAL);
		timed(t0, "allocate");
		/* What it allocated is there, also on an error. */
		if (n > 0)
			w->n[k] = n;
		if (err)
			error_seen(w, err, "allocate");
	}
	if (w->pm && !w->map && w->n[w->self] >= MAPPED) {
		void *addr;
		int granted = 0;
		error_t err = pm_container_map(w->pm, w->c[w->self], 0, MAPPED,
					       CONT_MAP_READ | CONT_MAP_WRITE,
					       &addr, &granted);
		if (!err && (granted & CONT_MAP_WRITE))
			w->map = addr;
		else if (err)
			error_seen(w, err, "map");
	}
}

static void connect_again(struct worker *w)
{
	pm_task_t self;

	if (pm_connect(w->socket, &w->pm)) {
		w->pm = NULL;
		usleep(100 * 1000); /* its pmd restarts */
		return;
	}
	if (pm_self(w->pm, &self)) {
		session_end(w);
		return;
	}
	w->self = (pm_node_t)(self >> 48);
	w->reconnects++;
}

/* A frame that answers EIO is lost for good (its node went down or
 * restarted): it goes, and a new one takes its place (a frame that is
 * not there, ENOENT, only the latter). */
static void renew(struct worker *w, unsigned k, unsigned f, error_t why)
{
	int one = 1;
	error_t err = why == EIO ? pm_container_deallocate(w->pm, w->c[k], f,
							   1) : 0;

	if (!err)
		err = pm_container_allocate(w->pm, w->c[k], f, &one, 0);
	w->known[k][f] = 0;
	w->nhist[k][f] = 0;
	if (!err)
		w->renewed++;
	else
		error_seen(w, err, "renew");
}

/* Whose bytes a wrong read shows: the frame (of some task's container on
 * node k) whose write seq they are, by the pattern. */
static void whose(const uint8_t *got, uint64_t seq)
{
	uint8_t b[SIZE];

	for (unsigned k = 1; k <= NODES; k++)
		for (unsigned f = 0; f < FRAMES; f++) {
			pattern(b, k, f, seq);
			if (!memcmp(b, got, SIZE)) {
				fprintf(stderr, "chaos:   they are write %lu's "
					"to frame %u of a container on node %u "
					"(of this task or another's)\n",
					(unsigned long)seq, f, k);
				return;
			}
		}
	fprintf(stderr, "chaos:   they are no write's (first bytes %02x %02x "
		"%02x %02x)\n", got[0], got[1], got[2], got[3]);
}

/* Checks a read of frame f on node k against what was acknowledged. */
static void read_check(struct worker *w, unsigned k, unsigned f, bool final)
{
	uint8_t got[SIZE], want[SIZE];
	uint64_t seq = w->known[k][f], t0 = now_ms();
	error_t err = pm_container_read(w->pm, w->c[k], f, 0, got, SIZE);

	timed(t0, "read");
	w->reads++;
	if (err) {
		w->read_errs++;
		if (final && w->stable[k] && w->stable[w->self])
			failed("frame %u on node %u (stable): %s after an "
			       "acknowledged write", f, k, strerror(err));
		error_seen(w, err, "read");
		if ((err == EIO || err == ENOENT) && w->pm && !final)
			renew(w, k, f, err);
		return;
	}
	if (!seq)
		return;
	w->verified += final;
	pattern(want, k, f, seq);
	if (memcmp(got, want, SIZE)) {
		uint64_t had;
		memcpy(&had, got, sizeof(had));
		failed("task on node %u, frame %u on node %u, at %lu ms: "
		       "reads write %lu's bytes (or none), not write %lu's",
		       w->self, f, k, (unsigned long)(now_ms() - w->t0),
		       (unsigned long)had, (unsigned long)seq);
		whose(got, had);
		hist_print(w, k, f);
	}
}

static void step(struct worker *w)
{
	unsigned k = 1 + (unsigned)(rand() % NODES);
	unsigned f;
	uint8_t b[SIZE];
	uint64_t t0;
	error_t err;

	if (!w->n[k])
		return;
	f = (unsigned)rand() % (unsigned)w->n[k];
	switch (rand() % 4) {
	case 0:
	case 1: /* a write */
		pattern(b, k, f, ++w->seq);
		t0 = now_ms();
		err = pm_container_write(w->pm, w->c[k], f, 0, b, SIZE);
		timed(t0, "write");
		w->writes++;
		hist_add(w, k, f, w->seq, err);
		if (err) {
			w->write_errs++;
			w->known[k][f] = 0; /* it may or may not have landed */
			error_seen(w, err, "write");
			if ((err == EIO || err == ENOENT) && w->pm)
				renew(w, k, f, err);
		} else {
			w->known[k][f] = w->seq;
		}
		break;
	case 2:
		read_check(w, k, f, false);
		break;
	case 3: /* a store through the mapping, read back by the pmd */
		if (!w->map || k != w->self || f >= MAPPED)
			break;
		pattern(b, k, f, ++w->seq);
		memcpy(w->map + (size_t)f * PM_FRAME_SIZE, b, SIZE);
		w->known[k][f] = w->seq;
		hist_add(w, k, f, w->seq, 0);
		w->stores++;
		read_check(w, k, f, false);
		break;
	}
}

static int work(int argc, char **argv)
{
	static struct worker w;
	uint64_t end;

	if (argc != 5)
		return 2;
	w.socket = argv[2];
	w.calm = argv[3];
	for (const char *s = argv[4]; *s; s++)
		if (*s >= '1' && *s <= '0' + NODES)
			w.stable[*s - '0'] = true;
	srand((unsigned)getpid());
	w.t0 = now_ms();
	/* Until the driver says all is calm (or far too long passed). */
	end = now_ms() + 10 * 60 * 1000;
	while (access(w.calm, F_OK) != 0 && now_ms() < end) {
		if (!w.pm)
			connect_again(&w);
		if (w.pm)
			containers_make(&w);
		if (w.pm)
			step(&w);
	}
	/* Calm: every acknowledged write is read back. */
	for (int tries = 0; !w.pm && tries < 100; tries++)
		connect_again(&w);
	for (unsigned k = 1; w.pm && k <= NODES; k++)
		for (unsigned f = 0; w.pm && f < (unsigned)w.n[k]; f++)
			if (w.known[k][f])
				read_check(&w, k, f, true);
	printf("chaos: task on node %u: %lu writes (%lu failed clearly), "
	       "%lu reads (%lu failed clearly), %lu stores through mappings, "
	       "%lu lost frames renewed, %lu sessions; at the end %lu "
	       "acknowledged writes read back\n", w.self,
	       (unsigned long)w.writes, (unsigned long)w.write_errs,
	       (unsigned long)w.reads, (unsigned long)w.read_errs,
	       (unsigned long)w.stores, (unsigned long)w.renewed,
	       (unsigned long)w.reconnects, (unsigned long)w.verified);
	for (int e = 0; e < 256; e++)
		if (errs[e])
			printf("chaos:   %s: %lu\n", strerror(e),
			       (unsigned long)errs[e]);
	session_end(&w);
	return failures ? 1 : 0;
}

/* ---- the checker ---- */

static bool settled(int n, char **sockets, bool last)
{
	bool ok = true;

	for (int i = 0; i < n; i++) {
		struct pm_debug_loan loans[64];
		struct pm_debug_stat st;
		int count = 64, books = 0;
		pm_t *pm;
		error_t err = pm_connect(sockets[i], &pm);

		if (err) {
			if (last)
				failed("%s: %s", sockets[i], strerror(err));
			ok = false;
			continue;
		}
		err = pm_debug_stat(pm, &st);
		if (!err)
			err = pm_debug_loans(pm, loans, &count, &books);
		pm_disconnect(pm);
		if (err) {
			if (last)
				failed("%s: %s", sockets[i], strerror(err));
			ok = false;
			continue;
		}
		if (!st.invariant_ok || !books) {
			failed("%s: the accounting check failed (its log says "
			       "where)", sockets[i]);
			return true; /* no use waiting */
		}
		if (st.tasks != 1 || st.containers || st.frames || st.charged ||
		    count) {
			if (last)
				failed("%s: with every task gone it still has "
				       "%lu tasks, %lu containers, %lu frames, "
				       "%lu charged, loans with %d nodes",
				       sockets[i], (unsigned long)st.tasks - 1,
				       (unsigned long)st.containers,
				       (unsigned long)st.frames,
				       (unsigned long)st.charged, count);
			for (int k = 0; last && k < count; k++)
				fprintf(stderr, "chaos:   lends node %u %lu slots, "
					"borrows %lu of it\n", loans[k].node,
					(unsigned long)loans[k].lent_to,
					(unsigned long)loans[k].borrowed_from);
			ok = false;
		}
	}
	return ok;
}

static int check(int argc, char **argv)
{
	uint64_t end = now_ms() + HANG_MS;

	if (argc < 3)
		return 2;
	while (!settled(argc - 2, argv + 2, false) && !failures) {
		if (now_ms() > end) {
			settled(argc - 2, argv + 2, true);
			break;
		}
		usleep(200 * 1000);
	}
	if (!failures)
		printf("chaos: %d nodes: accounting exact, nothing held\n",
		       argc - 2);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "work"))
		return work(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "check"))
		return check(argc, argv);
	fprintf(stderr, "usage: chaos work SOCKET CALM STABLE | "
		"chaos check SOCKET...\n");
	return 2;
}
