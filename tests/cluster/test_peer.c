/*
 * A peer that speaks the protocol wrongly on purpose. Node 1 is a pmd in
 * this process (driven turn by turn, tests/fuzz/fuzz.h); node 2 is this
 * test (tests/fuzz/node2.h): it asks for loans for tasks node 1 does not
 * have, gives back and asks back slots it was never lent, answers a
 * forwarded map with slots node 1 never lent, names windows nobody can
 * reach, resets, and answers calls never made; and node 1 forgets it
 * while it did not forget node 1. Each time node 1 answers
 * as node_proto.h says (or drops what it must), changes nothing, keeps
 * its books exact (loans in and out included) and serves on.
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

#include "check.h"
#include "daemon.h"
#include "fuzz.h"
#include "node2.h"
#include "node_priv.h"
#include "pm_proto.h"
#include "task.h"

static struct fuzz_pmd *pmd;

/* What node 1 sent node 2, newest last. */
#define HEARD_MAX 64
static struct heard {
	struct pmd_nreq_hdr h;
	uint8_t body[256];
} heard[HEARD_MAX];
static unsigned nheard;
static uint64_t next_id;

static void hear(const struct pmd_nreq_hdr *h, const uint8_t *body, void *arg)
{
	struct heard *e;

	(void)arg;
	if (nheard == HEARD_MAX)
		return;
	e = &heard[nheard++];
	e->h = *h;
	memcpy(e->body, body, h->len < sizeof(e->body) ? h->len
						       : sizeof(e->body));
}

/* The answer node 1 gave to our request id, or NULL. */
static const struct heard *answer_to(uint64_t id)
{
	for (unsigned i = 0; i < nheard; i++)
		if ((heard[i].h.flags & PMD_NREQ_REPLY) && heard[i].h.id == id)
			return &heard[i];
	return NULL;
}

/* The last request of type node 1 made of node 2, or NULL. */
static const struct heard *request_of(uint16_t type)
{
	for (unsigned i = nheard; i-- > 0;)
		if (!(heard[i].h.flags & PMD_NREQ_REPLY) &&
		    heard[i].h.type == type)
			return &heard[i];
	return NULL;
}

/* A request of node 2's: node 1's answer, which must come (errno). */
static error_t ask(uint16_t type, const void *body, uint32_t len, void *out,
		   size_t out_len)
{
	uint64_t id = ++next_id;
	const struct heard *a;

	node2_send(pmd, type, 0, id, 0, body, len, 500);
	a = answer_to(id);
	if (!a)
		fail_msg("node 1 did not answer a request of type %u", type);
	if (out_len)
		memcpy(out, a->body, a->h.len < out_len ? a->h.len : out_len);
	return pm_status_to_errno(a->h.status);
}

/* Node 1's books: its own check, and its loans' (nothing lent when
 * none). */
static uint64_t books(void)
{
	struct pm_debug_loans_rep *rep = malloc(sizeof(*rep));
	uint64_t lent = pmd->core.budget.lent;

	assert_non_null(rep);
	fuzz_pmd_check(pmd, false);
	pmd_cluster_loans(pmd->srv->cluster, rep);
	assert_true(rep->ok);
	assert_true(rep->n <= 1);
	assert_int_equal(rep->n ? rep->e[0].lent_to : 0, lent);
	free(rep);
	return lent;
}

/* The test's tasks on node 1, closed by the teardown (also after a
 * failed assertion). */
static struct fuzz_task tasks[4];
static unsigned ntasks;

static struct fuzz_task *task_open(bool fault)
{
	assert_true(ntasks < 4);
	fuzz_task_open(pmd, &tasks[ntasks], fault);
	return &tasks[ntasks++];
}

static bool heard_type(void *arg)
{
	return request_of(*(uint16_t *)arg) != NULL;
}

static int group_setup(void **state)
{
	signal(SIGPIPE, SIG_IGN);
	pmd = fuzz_pmd_start(true);
	node2_listen(hear, NULL);
	return 0;
}

static int setup(void **state)
{
	nheard = 0;
	node2_up(pmd);
	return 0;
}

static int teardown(void **state)
{
	while (ntasks)
		fuzz_task_close(&tasks[--ntasks]);
	node2_down(pmd);
	fuzz_pmd_idle(pmd);
	return 0;
}

static void alloc_tagged(struct pmd_nreq_alloc_req *q, uint64_t task,
			 uint64_t cont)
{
	*q = (struct pmd_nreq_alloc_req){ .n = 1, .task = task, .cont = cont,
					  .handle = 9 };
}

static void a_loan_for_a_task_it_does_not_have(void **state)
{
	struct pmd_nreq_alloc_req q;
	struct fuzz_task *t, *plain;
	uint32_t n;

	t = task_open(true);
	plain = task_open(false);
	/* No such task here; a task of node 2's; one that cannot follow
	 * its mappings; a container that is not node 2's. */
	alloc_tagged(&q, (uint64_t)1 << 48 | 999, (uint64_t)2 << 48 | 5);
	assert_int_equal(ask(PMD_NREQ_ALLOC, &q, sizeof(q), NULL, 0), ESRCH);
	alloc_tagged(&q, (uint64_t)2 << 48 | 7, (uint64_t)2 << 48 | 5);
	assert_int_equal(ask(PMD_NREQ_ALLOC, &q, sizeof(q), NULL, 0), ESRCH);
	alloc_tagged(&q, plain->id, (uint64_t)2 << 48 | 5);
	assert_int_equal(ask(PMD_NREQ_ALLOC, &q, sizeof(q), NULL, 0), ESRCH);
	alloc_tagged(&q, t->id, (uint64_t)1 << 48 | 5);
	assert_int_equal(ask(PMD_NREQ_ALLOC, &q, sizeof(q), NULL, 0), ESRCH);
	alloc_tagged(&q, t->id, (uint64_t)2 << 48 | 5);
	q.n = PMD_LEND_MAX + 1;
	assert_int_equal(ask(PMD_NREQ_ALLOC, &q, sizeof(q), NULL, 0), ESRCH);
	/* Neither tagged nor untagged: a body of neither size. */
	n = 1;
	assert_int_equal(ask(PMD_NREQ_ALLOC, &q, 12, NULL, 0), EPROTO);
	assert_int_equal(books(), 0);
	/* The right one is lent. */
	alloc_tagged(&q, t->id, (uint64_t)2 << 48 | 5);
	assert_int_equal(ask(PMD_NREQ_ALLOC, &q, sizeof(q), &n, sizeof(n)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(books(), 1);
}

static void slots_it_never_lent_given_and_asked_back(void **state)
{
	struct pmd_nreq_alloc_rep rep;
	struct pmd_nreq_free_req fq = { 0 };
	struct pmd_nreq_return_req rq = { 0 };
	uint8_t rbuf[256];
	uint32_t untagged = 2;

	assert_int_equal(ask(PMD_NREQ_ALLOC, &untagged, sizeof(untagged), &rep,
			     sizeof(rep)), 0);
	assert_int_equal(rep.n, 2);
	assert_int_equal(books(), 2);
	/* A slot of the segment that was not lent, a segment that is not,
	 * a slot past the segment: acknowledged, nothing comes back. */
	fq.n = 3;
	fq.e[0] = (struct pmd_nreq_free_slot){ .seg = rep.e[0].seg,
		.slot = (uint16_t)(rep.e[0].slot ^ 0x100) };
	fq.e[1] = (struct pmd_nreq_free_slot){ .seg = 99999, .slot = 0 };
	fq.e[2] = (struct pmd_nreq_free_slot){ .seg = rep.e[0].seg,
		.slot = 60000 };
	assert_int_equal(ask(PMD_NREQ_FREE, &fq, offsetof(struct
			     pmd_nreq_free_req, e) + 3 * sizeof(fq.e[0]),
			     NULL, 0), 0);
	assert_int_equal(books(), 2);
	/* Malformed: too many, or a length that is not its count's. */
	fq.n = PMD_NREQ_FREE_MAX + 1;
	assert_int_equal(ask(PMD_NREQ_FREE, &fq, sizeof(fq), NULL, 0), EPROTO);
	fq.n = 2;
	assert_int_equal(ask(PMD_NREQ_FREE, &fq, offsetof(struct
			     pmd_nreq_free_req, e) + 3 * sizeof(fq.e[0]),
			     NULL, 0), EPROTO);
	/* RETURN is for slots lent for a task's mappings: these are lost
	 * to the asker (zero bytes), and stay lent. */
	rq.n = 2;
	rq.e[0] = (struct pmd_nreq_free_slot){ .seg = rep.e[0].seg,
					       .slot = rep.e[0].slot };
	rq.e[1] = (struct pmd_nreq_free_slot){ .seg = 99999, .slot = 3 };
	assert_int_equal(ask(PMD_NREQ_RETURN, &rq, offsetof(struct
			     pmd_nreq_return_req, e) + 2 * sizeof(rq.e[0]),
			     rbuf, sizeof(rbuf)), 0);
	assert_int_equal(((struct pmd_nreq_return_rep *)rbuf)->lost, 3);
	assert_int_equal(books(), 2);
	rq.n = 0;
	assert_int_equal(ask(PMD_NREQ_RETURN, &rq, offsetof(struct
			     pmd_nreq_return_req, e), NULL, 0), EPROTO);
	rq.n = 1;
	rq.flags = 0x80;
	assert_int_equal(ask(PMD_NREQ_RETURN, &rq, offsetof(struct
			     pmd_nreq_return_req, e) + sizeof(rq.e[0]),
			     NULL, 0), EPROTO);
	rq.n = PMD_RETURN_MAX + 1;
	rq.flags = 0;
	assert_int_equal(ask(PMD_NREQ_RETURN, &rq, sizeof(rq), NULL, 0),
			 EPROTO);
	/* What was lent comes back. */
	fq.n = 2;
	fq.e[0] = (struct pmd_nreq_free_slot){ .seg = rep.e[0].seg,
					       .slot = rep.e[0].slot };
	fq.e[1] = (struct pmd_nreq_free_slot){ .seg = rep.e[1].seg,
					       .slot = rep.e[1].slot };
	assert_int_equal(ask(PMD_NREQ_FREE, &fq, offsetof(struct
			     pmd_nreq_free_req, e) + 2 * sizeof(fq.e[0]),
			     NULL, 0), 0);
	assert_int_equal(books(), 0);
}

/* The local task imports a container "of node 2" (node 2 answers the
 * import with rh): its forwarded handle. */
static container_t import_from_node2(struct fuzz_task *t, container_t rh)
{
	struct pm_token tok;
	uint64_t share = (uint64_t)2 << 48 | 0x1234;
	uint16_t type = PMD_NREQ_FWD_IMPORT;
	const struct heard *rq;
	container_t h = 0;
	uint32_t seq;

	memset(&tok, 0x5a, sizeof(tok));
	memcpy(tok.bytes, &share, sizeof(share));
	nheard = 0;
	seq = fuzz_task_send(pmd, t, PM_MSG_IMPORT, &tok, sizeof(tok));
	fuzz_pmd_run(pmd, 2000, heard_type, &type);
	rq = request_of(type);
	assert_non_null(rq);
	node2_send(pmd, type, PMD_NREQ_REPLY, rq->h.id, PM_ST_OK, &rh,
		   sizeof(rh), 50);
	assert_int_equal(fuzz_task_reply(pmd, t, seq, &h, sizeof(h)), 0);
	return h;
}

/* A forwarded map of h answered by node 2 with body (a task reply and a
 * map reply): the task's status. */
static error_t map_answered(struct fuzz_task *t, container_t h,
			    const void *body, uint32_t len)
{
	struct pm_map_req q = { .handle = h, .start = 0, .count = 1,
				.flags = CONT_MAP_READ };
	uint16_t type = PMD_NREQ_FWD_OP;
	const struct heard *rq;
	uint32_t seq;

	nheard = 0;
	seq = fuzz_task_send(pmd, t, PM_MSG_MAP, &q, sizeof(q));
	fuzz_pmd_run(pmd, 2000, heard_type, &type);
	rq = request_of(type);
	assert_non_null(rq);
	node2_send(pmd, type, PMD_NREQ_REPLY, rq->h.id, PM_ST_OK, body, len,
		   50);
	return fuzz_task_reply(pmd, t, seq, NULL, 0);
}

static void a_map_answer_naming_slots_it_never_lent(void **state)
{
	struct {
		struct pm_reply r;
		struct pm_map_rep m;
		struct pm_map_run run;
	} a = { .m = { .granted = CONT_MAP_READ, .done = 1, .nruns = 1 },
		.run = { .segment = 5, .slot = 0, .nframes = 1,
			 .prot = CONT_MAP_READ } };
	struct fuzz_task *t;
	struct pmd_task *pt;
	container_t h;

	t = task_open(true);
	h = import_from_node2(t, 77);
	pt = pmd_task_find(&pmd->core, t->id);
	assert_non_null(pt);
	/* Slots of a segment node 1 keeps for nobody; more frames than
	 * asked; more than it covers; a short answer. */
	assert_int_equal(map_answered(t, h, &a, sizeof(a)), EPROTO);
	a.m.done = 2;
	assert_int_equal(map_answered(t, h, &a, sizeof(a)), EPROTO);
	a.m.done = 1;
	a.run.nframes = 3;
	assert_int_equal(map_answered(t, h, &a, sizeof(a)), EPROTO);
	assert_int_equal(map_answered(t, h, &a, sizeof(a.r) + 4), EPROTO);
	assert_int_equal(pt->nsegs_given, 0);
	assert_int_equal(books(), 0);
}

/* A forwarded request of node 2's: its status, whether node 1 refused
 * it as a node request or answered the task's reply. */
static error_t fwd_op(const void *body, uint32_t len)
{
	uint8_t rep[sizeof(struct pm_reply) + 64];
	error_t err = ask(PMD_NREQ_FWD_OP, body, len, rep, sizeof(rep));

	return err ? err
		   : pm_status_to_errno(((struct pm_reply *)rep)->status);
}

static void windows_nobody_can_reach(void **state)
{
	struct pmd_nreq_fwd_import imp = { .task = (uint64_t)2 << 48 | 7 };
	struct pm_share_req share = { .task = imp.task };
	struct pm_alloc_req alloc = { .count = 4 };
	struct {
		struct pmd_nreq_fwd_op op;
		struct pm_io_req io;
		struct pmd_nreq_window w;
	} q = { .op = { .task = imp.task, .type = PM_MSG_WRITE,
			.flags = PMD_FWD_WINDOW,
			.len = sizeof(struct pm_io_req) +
			       sizeof(struct pmd_nreq_window) },
		.io = { .frame = 1, .len = 20000 },
		.w = { .key = 1, .base = 0, .len = 1 << 20 } };
	struct pm_io_req rd = { .frame = 1, .len = 16 };
	uint8_t rep[8], got[16], zero[16] = { 0 };
	struct fuzz_task *t;
	container_t c, weak, ph;

	/* Node 2's task imports a container of node 1's task. */
	t = task_open(false);
	assert_int_equal(fuzz_task_call(pmd, t, PM_MSG_CREATE, NULL, 0, &c,
					sizeof(c)), 0);
	alloc.handle = c;
	assert_int_equal(fuzz_task_call(pmd, t, PM_MSG_ALLOCATE, &alloc,
					sizeof(alloc), rep, 8), 0);
	share.handle = c;
	assert_int_equal(fuzz_task_call(pmd, t, PM_MSG_SHARE, &share,
					sizeof(share), &weak, sizeof(weak)), 0);
	assert_int_equal(fuzz_task_call(pmd, t, PM_MSG_EXPORT, &weak,
					sizeof(weak), imp.token,
					sizeof(imp.token)), 0);
	assert_int_equal(ask(PMD_NREQ_FWD_IMPORT, &imp, sizeof(imp), &ph,
			     sizeof(ph)), 0);
	/* A write whose bytes are in a window node 1 cannot read: EIO, and
	 * nothing written. */
	q.io.handle = ph;
	assert_int_equal(fwd_op(&q, sizeof(q)), EIO);
	rd.handle = c;
	assert_int_equal(fuzz_task_call(pmd, t, PM_MSG_READ, &rd, sizeof(rd),
					got, sizeof(got)), 0);
	assert_memory_equal(got, zero, sizeof(zero));
	/* A window smaller than the bytes; a window for what is neither a
	 * read nor a write; the window flag without its registration. */
	q.w.len = 100;
	assert_int_equal(fwd_op(&q, sizeof(q)), EPROTO);
	q.w.len = 1 << 20;
	q.op.type = PM_MSG_STAT;
	assert_int_equal(fwd_op(&q, sizeof(q)), EPROTO);
	q.op.type = PM_MSG_READ;
	q.op.len = sizeof(struct pm_io_req);
	assert_int_equal(fwd_op(&q, sizeof(q.op) + sizeof(q.io)), EPROTO);
	assert_int_equal(books(), 0);
}

static void a_reset_forgets_both_ways(void **state)
{
	struct pmd_nreq_alloc_rep rep;
	uint32_t n = 3;
	struct pm_stat_rep st;
	struct fuzz_task *t;
	container_t h;

	assert_int_equal(ask(PMD_NREQ_ALLOC, &n, sizeof(n), &rep,
			     sizeof(rep)), 0);
	assert_int_equal(books(), 3);
	t = task_open(false);
	h = import_from_node2(t, 77);
	/* Node 2 says it declared node 1 down and forgot it: node 1
	 * forgets its loans and the handles node 2 served. */
	assert_int_equal(ask(PMD_NREQ_RESET, NULL, 0, NULL, 0), 0);
	fuzz_pmd_run(pmd, 20, NULL, NULL);
	assert_int_equal(books(), 0);
	assert_int_equal(fuzz_task_call(pmd, t, PM_MSG_STAT, &h, sizeof(h),
					&st, sizeof(st)), ESTALE);
}

static void answers_to_calls_never_made(void **state)
{
	struct {
		uint32_t n, pad;
		struct pmd_nreq_lent e;
	} late = { .n = 1, .e = { .key = 1, .len = 1 << 21, .seg = 4,
				  .slot = 2 } };
	struct pmd_nreq_ping_rep ping = { 0 };
	uint16_t type = PMD_NREQ_FREE;
	const struct heard *f;

	/* An answer nobody waits for is dropped; a loan nobody asked for
	 * goes back at once. */
	node2_send(pmd, PMD_NREQ_PING, PMD_NREQ_REPLY, 4242, PM_ST_OK, &ping,
		   sizeof(ping), 20);
	nheard = 0;
	node2_send(pmd, PMD_NREQ_ALLOC, PMD_NREQ_REPLY, 4243, PM_ST_OK, &late,
		   sizeof(late), 20);
	fuzz_pmd_run(pmd, 1000, heard_type, &type);
	f = request_of(PMD_NREQ_FREE);
	assert_non_null(f);
	assert_int_equal(((const struct pmd_nreq_free_req *)f->body)->n, 1);
	assert_int_equal(((const struct pmd_nreq_free_req *)f->body)->e[0].seg,
			 4);
	assert_int_equal(books(), 0);
}


/* A home we forget may not have forgotten us (paused, cut off): what it
 * could reach by RDMA goes with it, so its stale reads and writes find
 * nothing (never a slot lent since to another). */
static void a_forgotten_home_reaches_nothing(void **state)
{
	struct pmd_nreq_alloc_rep rep;
	uint32_t n = 3;

	assert_int_equal(ask(PMD_NREQ_ALLOC, &n, sizeof(n), &rep, sizeof(rep)),
			 0);
	assert_int_equal(rep.n, 3);
	assert_false(node2_key_gone(rep.e[0].key));
	node2_back(pmd);
	assert_true(node2_key_gone(rep.e[0].key));
	assert_int_equal(books(), 0);
}

/* Between forgetting node 2 and its answer to our RESET, nothing new is
 * made with it, either way: its loans and imports are refused ENODEV
 * (its PING is not), and so are our tasks' calls to it; once it
 * answered, all goes again. */
static void nothing_new_until_the_reset_is_answered(void **state)
{
	struct pmd_nreq_fwd_import imp = { .task = (uint64_t)2 << 48 | 7 };
	uint16_t type = PMD_NREQ_RESET;
	struct pmd_nreq_alloc_rep rep;
	struct pm_token tok;
	const struct heard *rs;
	struct fuzz_task *t;
	container_t h;
	uint32_t n = 1;

	nheard = 0;
	node2_back(pmd);
	fuzz_pmd_run(pmd, 1000, heard_type, &type);
	rs = request_of(PMD_NREQ_RESET);
	assert_non_null(rs);
	assert_int_equal(ask(PMD_NREQ_ALLOC, &n, sizeof(n), NULL, 0), ENODEV);
	assert_int_equal(ask(PMD_NREQ_FWD_IMPORT, &imp, sizeof(imp), NULL, 0),
			 ENODEV);
	assert_int_equal(ask(PMD_NREQ_PING, NULL, 0, NULL, 0), 0);
	t = task_open(false);
	memset(&tok, 0x5a, sizeof(tok));
	h = (uint64_t)2 << 48 | 0x1234;
	memcpy(tok.bytes, &h, sizeof(h));
	assert_int_equal(fuzz_task_call(pmd, t, PM_MSG_IMPORT, &tok,
					sizeof(tok), &h, sizeof(h)), ENODEV);
	node2_send(pmd, PMD_NREQ_RESET, PMD_NREQ_REPLY, rs->h.id, PM_ST_OK,
		   NULL, 0, 50);
	assert_int_equal(ask(PMD_NREQ_ALLOC, &n, sizeof(n), &rep, sizeof(rep)),
			 0);
	assert_int_equal(books(), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			a_loan_for_a_task_it_does_not_have, setup, teardown),
		cmocka_unit_test_setup_teardown(
			slots_it_never_lent_given_and_asked_back, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			a_map_answer_naming_slots_it_never_lent, setup,
			teardown),
		cmocka_unit_test_setup_teardown(windows_nobody_can_reach,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_reset_forgets_both_ways,
						setup, teardown),
		cmocka_unit_test_setup_teardown(answers_to_calls_never_made,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			a_forgotten_home_reaches_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(
			nothing_new_until_the_reset_is_answered, setup,
			teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
