/*
 * test_fab_verbs.c - the native verbs transport's logic against a mock
 * device: every librdmacm and libibverbs call it makes is wrapped
 * (-Wl,--wrap), and the data path (post, poll) goes through a fake
 * device context's ops table, so the tests run anywhere and provoke what
 * a real device does only on a bad day: completion errors, a queue pair
 * in error, a peer gone, a peer restarted, garbage connection requests.
 * Everything is driven through fabric.h, as pmd drives it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "fabric.h"
#include "verbs/fab_verbs.h"

/* ---- the mock device ---- */

#define MAX_WR  512
#define MAX_EV  64
#define MAX_QP  32

struct mock_wr {
	struct ibv_qp *qp;
	uint64_t wr_id;
	enum ibv_wr_opcode opcode;
	uint32_t len, lkey, rkey;
	uint64_t raddr;
	unsigned flags;
};

static struct mock {
	struct ibv_context ctx;
	/* what exists */
	int ids, qps, pds, cqs, srqs, chans, mrs, cm_chans;
	/* the send queues: posted, not completed, in post order */
	struct mock_wr wr[MAX_WR];
	unsigned nwr;
	unsigned posted_total;
	/* the shared receive queue */
	uint64_t rx[MAX_WR];
	unsigned nrx;
	/* the completion queue */
	struct ibv_wc cq[MAX_WR];
	unsigned cq_head, cq_n;
	/* rdma_cm events waiting */
	struct rdma_cm_event ev[MAX_EV];
	uint8_t ev_priv[MAX_EV][56];
	unsigned ev_head, ev_n;
	/* behaviour */
	bool no_cm;                 /* rdma_create_event_channel: ENODEV */
	bool no_device;             /* rdma_bind_addr leaves verbs NULL */
	bool refuse;                /* connects are rejected */
	bool silent;                /* connects are never answered */
	uint64_t peer_nonce;        /* what an accepting peer says */
	int qp_fail;                /* rdma_create_qp fails with this */
	/* observed */
	unsigned connects, accepts, rejects, disconnects, resolves;
	uint8_t min_rnr_timer;
	struct fvb_hello sent_hello;
	uint32_t next_qpn, next_key;
	struct rdma_cm_id *last_id;
	int notify_armed;
	bool closing;               /* the endpoint closes: QPs go as they are */
} M;

static void ev_push(struct rdma_cm_id *id, enum rdma_cm_event_type type,
		    const void *priv, size_t len)
{
	unsigned i = (M.ev_head + M.ev_n++) % MAX_EV;

	assert_true(M.ev_n <= MAX_EV);
	M.ev[i] = (struct rdma_cm_event){ .id = id, .event = type };
	if (priv) {
		memcpy(M.ev_priv[i], priv, len);
		M.ev[i].param.conn.private_data = M.ev_priv[i];
		M.ev[i].param.conn.private_data_len = (uint8_t)len;
	}
}

static void cq_push(const struct ibv_wc *wc)
{
	assert_true(M.cq_n < MAX_WR);
	M.cq[(M.cq_head + M.cq_n++) % MAX_WR] = *wc;
}

static int mock_poll_cq(struct ibv_cq *cq, int n, struct ibv_wc *wc)
{
	int k = 0;

	(void)cq;
	while (k < n && M.cq_n) {
		wc[k++] = M.cq[M.cq_head];
		M.cq_head = (M.cq_head + 1) % MAX_WR;
		M.cq_n--;
	}
	return k;
}

static int mock_req_notify_cq(struct ibv_cq *cq, int solicited)
{
	(void)cq;
	(void)solicited;
	M.notify_armed++;
	return 0;
}

static int mock_post_send(struct ibv_qp *qp, struct ibv_send_wr *wr,
			  struct ibv_send_wr **bad)
{
	(void)bad;
	assert_null(wr->next);
	if (M.nwr == MAX_WR)
		return ENOMEM;
	M.wr[M.nwr++] = (struct mock_wr){
		.qp = qp, .wr_id = wr->wr_id, .opcode = wr->opcode,
		.len = wr->num_sge ? wr->sg_list[0].length : 0,
		.lkey = wr->num_sge ? wr->sg_list[0].lkey : 0,
		.rkey = wr->wr.rdma.rkey, .raddr = wr->wr.rdma.remote_addr,
		.flags = wr->send_flags,
	};
	M.posted_total++;
	return 0;
}

static int mock_post_srq_recv(struct ibv_srq *srq, struct ibv_recv_wr *wr,
			      struct ibv_recv_wr **bad)
{
	(void)srq;
	(void)bad;
	assert_true(M.nrx < MAX_WR);
	M.rx[M.nrx++] = wr->wr_id;
	return 0;
}

/* Completes the oldest work of qp with status (flush: every one). */
static struct mock_wr complete_one(struct ibv_qp *qp, enum ibv_wc_status st)
{
	struct mock_wr w = { 0 };

	for (unsigned i = 0; i < M.nwr; i++) {
		if (M.wr[i].qp != qp)
			continue;
		w = M.wr[i];
		memmove(&M.wr[i], &M.wr[i + 1], (M.nwr - i - 1) * sizeof(w));
		M.nwr--;
		cq_push(&(struct ibv_wc){ .wr_id = w.wr_id, .status = st,
					  .qp_num = qp->qp_num,
					  .byte_len = w.len });
		return w;
	}
	fail_msg("no work on qp %u", qp->qp_num);
	return w;
}

/* The queue pair went to error: what it holds is flushed. */
static void flush_qp(struct ibv_qp *qp)
{
	for (unsigned i = 0; i < M.nwr;)
		if (M.wr[i].qp == qp)
			complete_one(qp, IBV_WC_WR_FLUSH_ERR);
		else
			i++;
}

static unsigned wr_on(const struct ibv_qp *qp)
{
	unsigned n = 0;

	for (unsigned i = 0; i < M.nwr; i++)
		n += M.wr[i].qp == qp;
	return n;
}

/* A message arrives on the connection of qp_num. */
static void deliver(uint32_t qp_num, uint32_t len, enum ibv_wc_status st)
{
	assert_true(M.nrx > 0);
	cq_push(&(struct ibv_wc){ .wr_id = M.rx[0], .status = st,
				  .opcode = IBV_WC_RECV, .qp_num = qp_num,
				  .byte_len = len });
	memmove(&M.rx[0], &M.rx[1], --M.nrx * sizeof(M.rx[0]));
}

/* ---- the wrapped calls (the linker's __wrap_ names: no prototypes) ---- */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-prototypes"

struct rdma_event_channel *__wrap_rdma_create_event_channel(void)
{
	struct rdma_event_channel *ch;

	if (M.no_cm) {
		errno = ENODEV;
		return NULL;
	}
	ch = calloc(1, sizeof(*ch));
	ch->fd = eventfd(0, EFD_CLOEXEC);
	M.cm_chans++;
	return ch;
}

void __wrap_rdma_destroy_event_channel(struct rdma_event_channel *ch)
{
	close(ch->fd);
	free(ch);
	M.cm_chans--;
}

int __wrap_rdma_create_id(struct rdma_event_channel *ch,
			  struct rdma_cm_id **id, void *context,
			  enum rdma_port_space ps)
{
	*id = calloc(1, sizeof(**id));
	(*id)->channel = ch;
	(*id)->context = context;
	(*id)->ps = ps;
	M.ids++;
	M.last_id = *id;
	return 0;
}

int __wrap_rdma_destroy_id(struct rdma_cm_id *id)
{
	assert_null(id->qp); /* rdma_destroy_qp first */
	free(id);
	M.ids--;
	return 0;
}

int __wrap_rdma_bind_addr(struct rdma_cm_id *id, struct sockaddr *addr)
{
	struct sockaddr_in *in = (void *)&id->route.addr.src_addr;

	memcpy(in, addr, sizeof(*in));
	if (!in->sin_port)
		in->sin_port = htons(40000);
	if (!M.no_device)
		id->verbs = &M.ctx;
	return 0;
}

int __wrap_rdma_listen(struct rdma_cm_id *id, int backlog)
{
	(void)id;
	(void)backlog;
	return 0;
}

int __wrap_rdma_resolve_addr(struct rdma_cm_id *id, struct sockaddr *src,
			     struct sockaddr *dst, int ms)
{
	(void)src;
	(void)ms;
	memcpy(&id->route.addr.dst_addr, dst, sizeof(struct sockaddr_in));
	id->verbs = &M.ctx;
	M.resolves++;
	ev_push(id, RDMA_CM_EVENT_ADDR_RESOLVED, NULL, 0);
	return 0;
}

int __wrap_rdma_resolve_route(struct rdma_cm_id *id, int ms)
{
	(void)ms;
	ev_push(id, RDMA_CM_EVENT_ROUTE_RESOLVED, NULL, 0);
	return 0;
}

static void accept_hello(struct rdma_cm_id *id)
{
	struct fvb_hello h = { .magic = FVB_HELLO_MAGIC,
			       .version = FVB_HELLO_VERSION,
			       .nonce = M.peer_nonce };

	ev_push(id, RDMA_CM_EVENT_ESTABLISHED, &h, sizeof(h));
}

int __wrap_rdma_connect(struct rdma_cm_id *id, struct rdma_conn_param *p)
{
	assert_true(p->private_data_len >= sizeof(M.sent_hello));
	memcpy(&M.sent_hello, p->private_data, sizeof(M.sent_hello));
	assert_int_equal(p->rnr_retry_count, 7);
	M.connects++;
	if (M.silent)
		return 0;
	if (M.refuse)
		ev_push(id, RDMA_CM_EVENT_REJECTED, NULL, 0);
	else
		accept_hello(id);
	return 0;
}

int __wrap_rdma_accept(struct rdma_cm_id *id, struct rdma_conn_param *p)
{
	struct fvb_hello h;

	assert_true(p->private_data_len >= sizeof(h));
	memcpy(&h, p->private_data, sizeof(h));
	assert_int_equal(h.magic, FVB_HELLO_MAGIC);
	M.accepts++;
	ev_push(id, RDMA_CM_EVENT_ESTABLISHED, NULL, 0);
	return 0;
}

int __wrap_rdma_reject(struct rdma_cm_id *id, const void *p, uint8_t len)
{
	(void)id;
	(void)p;
	(void)len;
	M.rejects++;
	return 0;
}

int __wrap_rdma_disconnect(struct rdma_cm_id *id)
{
	M.disconnects++;
	if (id->qp)
		flush_qp(id->qp);
	return 0;
}

int __wrap_rdma_get_cm_event(struct rdma_event_channel *ch,
			     struct rdma_cm_event **ev)
{
	(void)ch;
	if (!M.ev_n) {
		errno = EAGAIN;
		return -1;
	}
	*ev = malloc(sizeof(**ev));
	**ev = M.ev[M.ev_head];
	M.ev_head = (M.ev_head + 1) % MAX_EV;
	M.ev_n--;
	return 0;
}

int __wrap_rdma_ack_cm_event(struct rdma_cm_event *ev)
{
	free(ev);
	return 0;
}

int __wrap_rdma_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd,
			  struct ibv_qp_init_attr *a)
{
	assert_ptr_equal(pd->context, id->verbs);
	assert_non_null(a->srq);
	assert_int_equal(a->qp_type, IBV_QPT_RC);
	if (M.qp_fail) {
		errno = M.qp_fail;
		return -1;
	}
	id->qp = calloc(1, sizeof(*id->qp));
	id->qp->context = &M.ctx;
	id->qp->qp_num = ++M.next_qpn;
	M.qps++;
	return 0;
}

void __wrap_rdma_destroy_qp(struct rdma_cm_id *id)
{
	/* Never with work pending, but when the endpoint closes. */
	if (!M.closing)
		assert_int_equal(wr_on(id->qp), 0);
	for (unsigned i = 0; i < M.nwr;)
		if (M.wr[i].qp == id->qp)
			memmove(&M.wr[i], &M.wr[i + 1], (--M.nwr - i) * sizeof(M.wr[0]));
		else
			i++;
	free(id->qp);
	id->qp = NULL;
	M.qps--;
}

int __wrap_ibv_query_device(struct ibv_context *ctx, struct ibv_device_attr *a)
{
	(void)ctx;
	*a = (struct ibv_device_attr){ .max_qp_wr = 4096, .max_cqe = 32767,
				       .max_srq_wr = 4096,
				       .max_qp_rd_atom = 128,
				       .max_qp_init_rd_atom = 128 };
	return 0;
}

const char *__wrap_ibv_get_device_name(struct ibv_device *dev)
{
	(void)dev;
	return "mock0";
}

struct ibv_pd *__wrap_ibv_alloc_pd(struct ibv_context *ctx)
{
	struct ibv_pd *pd = calloc(1, sizeof(*pd));

	pd->context = ctx;
	M.pds++;
	return pd;
}

int __wrap_ibv_dealloc_pd(struct ibv_pd *pd)
{
	assert_int_equal(M.mrs, 0); /* regions go first */
	free(pd);
	M.pds--;
	return 0;
}

struct ibv_comp_channel *__wrap_ibv_create_comp_channel(struct ibv_context *c)
{
	struct ibv_comp_channel *ch = calloc(1, sizeof(*ch));

	ch->context = c;
	ch->fd = eventfd(0, EFD_CLOEXEC);
	M.chans++;
	return ch;
}

int __wrap_ibv_destroy_comp_channel(struct ibv_comp_channel *ch)
{
	close(ch->fd);
	free(ch);
	M.chans--;
	return 0;
}

struct ibv_cq *__wrap_ibv_create_cq(struct ibv_context *ctx, int cqe,
				    void *cq_ctx, struct ibv_comp_channel *ch,
				    int vec)
{
	struct ibv_cq *cq = calloc(1, sizeof(*cq));

	(void)cqe;
	(void)cq_ctx;
	(void)vec;
	cq->context = ctx;
	cq->channel = ch;
	M.cqs++;
	return cq;
}

int __wrap_ibv_destroy_cq(struct ibv_cq *cq)
{
	assert_int_equal(M.qps, 0); /* queue pairs go first */
	free(cq);
	M.cqs--;
	return 0;
}

struct ibv_srq *__wrap_ibv_create_srq(struct ibv_pd *pd,
				      struct ibv_srq_init_attr *a)
{
	struct ibv_srq *srq = calloc(1, sizeof(*srq));

	(void)a;
	srq->context = pd->context;
	M.srqs++;
	return srq;
}

int __wrap_ibv_destroy_srq(struct ibv_srq *srq)
{
	free(srq);
	M.srqs--;
	M.nrx = 0; /* its receives are dropped */
	return 0;
}

struct ibv_mr *__wrap_ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr,
				       size_t len, uint64_t iova,
				       unsigned access)
{
	struct ibv_mr *mr = calloc(1, sizeof(*mr));

	(void)iova;
	assert_true(access & IBV_ACCESS_LOCAL_WRITE);
	mr->pd = pd;
	mr->addr = addr;
	mr->length = len;
	mr->lkey = ++M.next_key;
	mr->rkey = 0x1000 + M.next_key;
	M.mrs++;
	return mr;
}

/* The header picks either, depending on what the compiler knows of the
 * access flags. */
struct ibv_mr *__wrap_ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t len,
				 int access)
{
	return __wrap_ibv_reg_mr_iova2(pd, addr, len, (uintptr_t)addr,
				       (unsigned)access);
}

int __wrap_ibv_dereg_mr(struct ibv_mr *mr)
{
	free(mr);
	M.mrs--;
	return 0;
}

int __wrap_ibv_get_cq_event(struct ibv_comp_channel *ch, struct ibv_cq **cq,
			    void **ctx)
{
	(void)ch;
	(void)cq;
	(void)ctx;
	errno = EAGAIN;
	return -1;
}

void __wrap_ibv_ack_cq_events(struct ibv_cq *cq, unsigned n)
{
	(void)cq;
	(void)n;
}

int __wrap_ibv_modify_qp(struct ibv_qp *qp, struct ibv_qp_attr *a, int mask)
{
	(void)qp;
	assert_int_equal(mask, IBV_QP_MIN_RNR_TIMER);
	M.min_rnr_timer = a->min_rnr_timer;
	return 0;
}

#pragma GCC diagnostic pop

/* ---- the endpoint under test ---- */

#define TX 64
#define RX 16
#define TIMEOUT_MS 300

static struct fab_ep *ep;
static struct fab_mr *mr;
static uint8_t buf[65536];
static struct fab_rkey rk = { .key = 0x77, .base = 0x10000, .len = 65536 };
static unsigned log_warnings;

static void test_log(int level, const char *msg, void *arg)
{
	(void)arg;
	if (level <= LOG_WARNING)
		log_warnings++;
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "fabric: %s\n", msg);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void mock_reset(void)
{
	memset(&M, 0, sizeof(M));
	M.ctx.ops.poll_cq = mock_poll_cq;
	M.ctx.ops.req_notify_cq = mock_req_notify_cq;
	M.ctx.ops.post_send = mock_post_send;
	M.ctx.ops.post_srq_recv = mock_post_srq_recv;
	M.peer_nonce = 0xabc1;
}

static error_t open_ep_deadline(struct fab_ep **out, unsigned timeout_ms)
{
	struct fab_attr a = { .provider = "verbs", .node = "10.0.0.1",
			      .service = "7100", .tx_depth = TX,
			      .rx_depth = RX, .timeout_ms = timeout_ms };

	return fab_ep_open(&a, out);
}

static error_t open_ep(struct fab_ep **out)
{
	return open_ep_deadline(out, TIMEOUT_MS);
}

static int setup(void **state)
{
	(void)state;
	unsetenv(FAB_PROVIDER_ENV);
	mock_reset();
	log_warnings = 0;
	fab_log_set(test_log, NULL);
	assert_int_equal(open_ep(&ep), 0);
	assert_int_equal(fab_mr_reg(ep, buf, sizeof(buf), FAB_ACCESS_LOCAL, 0,
				    &mr), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	/* Whatever a test left with the device is flushed, as a closing
	 * endpoint's queue pairs are destroyed. */
	assert_int_equal(fab_mr_dereg(mr), 0);
	M.closing = true;
	assert_int_equal(fab_ep_close(ep), 0);
	assert_int_equal(M.ids + M.qps + M.pds + M.cqs + M.srqs + M.chans +
				 M.mrs + M.cm_chans,
			 0);
	return 0;
}

static fab_peer_t insert(const char *ip, unsigned port)
{
	struct fab_name name;
	fab_peer_t p;
	char s[8];

	snprintf(s, sizeof(s), "%u", port);
	assert_int_equal(fab_name_resolve(ep, ip, s, &name), 0);
	assert_int_equal(fab_peer_insert(ep, &name, &p), 0);
	return p;
}

/* Polls until want completions came (or 1 s): connection events are
 * looked at every millisecond. */
static size_t collect(struct fab_cqe *c, size_t want)
{
	uint64_t end = now_ms() + 1000;
	size_t got = 0, n;

	while (got < want && now_ms() < end) {
		assert_int_equal(fab_ep_poll(ep, c + got, want - got, &n), 0);
		got += n;
		if (!n)
			usleep(200);
	}
	return got;
}

/* Polls for ms, expecting nothing. */
static void quiet(unsigned ms)
{
	struct fab_cqe c[4];
	uint64_t end = now_ms() + ms;
	size_t n;

	while (now_ms() < end) {
		assert_int_equal(fab_ep_poll(ep, c, 4, &n), 0);
		assert_int_equal(n, 0);
		usleep(200);
	}
}

/* Polls until the device holds n posted work requests of qp (1 s). */
static void await_posted(struct ibv_qp **qp, unsigned n)
{
	uint64_t end = now_ms() + 1000;
	struct fab_cqe c[4];
	size_t got;

	while (now_ms() < end) {
		assert_int_equal(fab_ep_poll(ep, c, 4, &got), 0);
		assert_int_equal(got, 0);
		if (M.nwr >= n && (!*qp || wr_on(*qp) >= n))
			break;
		usleep(200);
	}
	assert_true(M.nwr >= n);
	if (!*qp)
		*qp = M.wr[M.nwr - 1].qp;
	assert_int_equal(wr_on(*qp), n);
}

/* ---- tests ---- */

static void open_and_close_release_everything(void **state)
{
	struct fab_info info;

	(void)state;
	assert_int_equal(fab_ep_info(ep, &info), 0);
	assert_string_equal(info.provider, "verbs:mock0");
	assert_int_equal(info.prov_key, 1);
	assert_int_equal(info.key_size, 4);
	assert_true(info.wait_fd);
	assert_int_equal(M.nrx, RX); /* every receive posted to the SRQ */
	assert_true(M.notify_armed > 0);
	/* teardown checks that nothing is left */
}

static void no_device_is_enodev_and_leaves_nothing(void **state)
{
	struct fab_ep *e2 = NULL;

	(void)state;
	M.no_cm = true;
	assert_int_equal(open_ep(&e2), ENODEV);
	M.no_cm = false;
	M.no_device = true;
	assert_int_equal(open_ep(&e2), ENODEV);
	M.no_device = false;
	assert_null(e2);
}

static void first_send_connects_then_posts_in_order(void **state)
{
	struct ibv_qp *qp = NULL;
	struct fab_cqe c[3];
	fab_peer_t p;
	struct sockaddr_in self;

	(void)state;
	p = insert("10.0.0.2", 7200);
	assert_int_equal(fab_send(ep, p, "one", 3, (void *)1), 0);
	assert_int_equal(fab_send(ep, p, "two!", 4, (void *)2), 0);
	assert_int_equal(M.nwr, 0); /* connecting */
	await_posted(&qp, 2);
	assert_int_equal(M.connects, 1);
	/* The hello names our listening address and instance. */
	assert_int_equal(M.sent_hello.magic, FVB_HELLO_MAGIC);
	memcpy(&self, M.sent_hello.addr, sizeof(self));
	assert_int_equal(ntohs(self.sin_port), 7100);
	assert_true(M.sent_hello.nonce != 0);
	assert_int_equal(M.wr[0].opcode, IBV_WR_SEND);
	assert_int_equal(M.wr[0].len, 3);
	assert_true(M.wr[0].flags & IBV_SEND_INLINE);
	assert_int_equal(M.wr[1].len, 4);
	complete_one(qp, IBV_WC_SUCCESS);
	complete_one(qp, IBV_WC_SUCCESS);
	assert_int_equal(collect(c, 2), 2);
	assert_ptr_equal(c[0].ctx, (void *)1);
	assert_ptr_equal(c[1].ctx, (void *)2);
	assert_int_equal(c[0].status, 0);
	assert_int_equal(c[1].status, 0);
}

static void reads_and_writes_post_one_sided_work(void **state)
{
	struct ibv_qp *qp = NULL;
	struct fab_cqe c[2];
	fab_peer_t p = insert("10.0.0.2", 7200);

	(void)state;
	assert_int_equal(fab_read(ep, p, mr, 100, &rk, 200, 4096, (void *)1), 0);
	assert_int_equal(fab_write(ep, p, mr, 0, &rk, 8, 64, (void *)2), 0);
	await_posted(&qp, 2);
	assert_int_equal(M.wr[0].opcode, IBV_WR_RDMA_READ);
	assert_int_equal(M.wr[0].raddr, 0x10000 + 200);
	assert_int_equal(M.wr[0].rkey, 0x77);
	assert_int_equal(M.wr[0].len, 4096);
	assert_int_equal(M.wr[1].opcode, IBV_WR_RDMA_WRITE);
	assert_int_equal(M.wr[1].raddr, 0x10000 + 8);
	complete_one(qp, IBV_WC_SUCCESS);
	complete_one(qp, IBV_WC_SUCCESS);
	assert_int_equal(collect(c, 2), 2);
	assert_int_equal(c[0].status + c[1].status, 0);
}

/*
 * A wrong key ends that operation alone: the queue pair it left in error
 * is replaced, and what it flushed is posted again, in order, on the new
 * one; the caller sees one error and the rest succeed.
 */
static void remote_access_error_ends_one_operation(void **state)
{
	struct ibv_qp *qp = NULL, *qp2 = NULL;
	struct fab_cqe c[4];
	fab_peer_t p = insert("10.0.0.2", 7200);
	uint32_t old;

	(void)state;
	assert_int_equal(fab_write(ep, p, mr, 0, &rk, 0, 64, (void *)1), 0);
	assert_int_equal(fab_send(ep, p, "after", 5, (void *)2), 0);
	assert_int_equal(fab_read(ep, p, mr, 0, &rk, 0, 64, (void *)3), 0);
	await_posted(&qp, 3);
	old = qp->qp_num;
	complete_one(qp, IBV_WC_REM_ACCESS_ERR);
	flush_qp(qp);
	assert_int_equal(collect(c, 1), 1);
	assert_ptr_equal(c[0].ctx, (void *)1);
	assert_int_equal(c[0].status, EACCES);
	assert_true(log_warnings > 0);
	/* A new connection, and the flushed two again, in order. */
	await_posted(&qp2, 2);
	assert_int_not_equal(qp2->qp_num, old);
	assert_int_equal(M.connects, 2);
	assert_int_equal(M.disconnects, 1);
	assert_int_equal(M.qps, 1); /* the old one is gone */
	assert_int_equal(M.wr[0].opcode, IBV_WR_SEND);
	assert_int_equal(M.wr[1].opcode, IBV_WR_RDMA_READ);
	complete_one(qp2, IBV_WC_SUCCESS);
	complete_one(qp2, IBV_WC_SUCCESS);
	assert_int_equal(collect(c, 2), 2);
	assert_ptr_equal(c[0].ctx, (void *)2);
	assert_ptr_equal(c[1].ctx, (void *)3);
	assert_int_equal(c[0].status + c[1].status, 0);
}

/* The same, but the peer restarted meanwhile (another instance accepts):
 * what was flushed is not done twice against a stranger. */
static void flushed_work_fails_if_the_peer_restarted(void **state)
{
	struct ibv_qp *qp = NULL;
	struct fab_cqe c[2];
	fab_peer_t p = insert("10.0.0.2", 7200);

	(void)state;
	assert_int_equal(fab_write(ep, p, mr, 0, &rk, 0, 64, (void *)1), 0);
	assert_int_equal(fab_write(ep, p, mr, 0, &rk, 0, 64, (void *)2), 0);
	await_posted(&qp, 2);
	M.peer_nonce = 0xdead1;
	complete_one(qp, IBV_WC_REM_ACCESS_ERR);
	flush_qp(qp);
	assert_int_equal(collect(c, 2), 2);
	assert_int_equal(c[0].status, EACCES);
	assert_ptr_equal(c[1].ctx, (void *)2);
	assert_int_equal(c[1].status, ECONNRESET);
	assert_int_equal(M.nwr, 0);
}

/* A queue pair in error without an error of its own (the link, the
 * peer's side): its work fails with a link error, and the next post
 * connects again. */
static void queue_pair_in_error_fails_its_work_then_reconnects(void **state)
{
	struct ibv_qp *qp = NULL, *qp2 = NULL;
	struct fab_cqe c[2];
	fab_peer_t p = insert("10.0.0.2", 7200);

	(void)state;
	assert_int_equal(fab_read(ep, p, mr, 0, &rk, 0, 64, (void *)1), 0);
	assert_int_equal(fab_read(ep, p, mr, 0, &rk, 0, 64, (void *)2), 0);
	await_posted(&qp, 2);
	flush_qp(qp);
	assert_int_equal(collect(c, 2), 2);
	assert_int_equal(c[0].status, ECONNRESET);
	assert_int_equal(c[1].status, ECONNRESET);
	assert_int_equal(M.qps, 0);
	assert_int_equal(fab_read(ep, p, mr, 0, &rk, 0, 64, (void *)3), 0);
	await_posted(&qp2, 1);
	assert_int_equal(M.connects, 2);
	complete_one(qp2, IBV_WC_SUCCESS);
	assert_int_equal(collect(c, 1), 1);
	assert_int_equal(c[0].status, 0);
}

/* A peer gone: retries exhausted fail the work with a link error; its
 * address refuses connections, tried again no faster than the backoff,
 * and what waits meanwhile ends by its deadline. */
static void peer_gone_fails_by_link_then_deadline(void **state)
{
	struct ibv_qp *qp = NULL;
	struct fab_cqe c[2];
	fab_peer_t p = insert("10.0.0.2", 7200);
	uint64_t t0;

	(void)state;
	assert_int_equal(fab_write(ep, p, mr, 0, &rk, 0, 64, (void *)1), 0);
	assert_int_equal(fab_write(ep, p, mr, 0, &rk, 0, 64, (void *)2), 0);
	await_posted(&qp, 2);
	M.refuse = true;
	complete_one(qp, IBV_WC_RETRY_EXC_ERR);
	flush_qp(qp);
	assert_int_equal(collect(c, 2), 2);
	assert_int_equal(c[0].status, EHOSTUNREACH);
	assert_int_equal(c[1].status, ECONNRESET);
	t0 = now_ms();
	assert_int_equal(fab_send(ep, p, "x", 1, (void *)3), 0);
	assert_int_equal(collect(c, 1), 1); /* held until its deadline... */
	assert_int_equal(c[0].status, ETIMEDOUT);
	assert_true(now_ms() - t0 >= TIMEOUT_MS - 5);
	/* ...while connects were tried, no faster than the backoff. */
	assert_true(M.connects >= 2);
	assert_true(M.connects - 1 <= (now_ms() - t0) / FVB_BACKOFF_MS + 2);
	assert_int_equal(M.nwr, 0);
}

/* A connect nobody answers (a lost request) is tried anew after
 * FVB_CONNECT_MS, not left to the connection manager's long retries. */
static void an_unanswered_connect_is_tried_again(void **state)
{
	struct ibv_qp *qp = NULL;
	struct fab_cqe c;
	fab_peer_t p;
	uint64_t t0;

	(void)state;
	/* An endpoint whose deadline outlasts the connect's. */
	assert_int_equal(fab_mr_dereg(mr), 0);
	assert_int_equal(fab_ep_close(ep), 0);
	assert_int_equal(open_ep_deadline(&ep, 5000), 0);
	assert_int_equal(fab_mr_reg(ep, buf, sizeof(buf), FAB_ACCESS_LOCAL, 0,
				    &mr), 0);
	p = insert("10.0.0.2", 7200);
	t0 = now_ms();
	M.silent = true;
	assert_int_equal(fab_send(ep, p, "x", 1, (void *)1), 0);
	while (M.connects < 2 && now_ms() - t0 < 3000)
		assert_int_equal(fab_ep_poll(ep, &c, 1, &(size_t){ 0 }), 0);
	assert_int_equal(M.connects, 2);
	assert_true(now_ms() - t0 >= FVB_CONNECT_MS);
	M.silent = false; /* the third is answered: the send goes */
	while (M.connects < 3 && now_ms() - t0 < 4000)
		assert_int_equal(fab_ep_poll(ep, &c, 1, &(size_t){ 0 }), 0);
	await_posted(&qp, 1);
	complete_one(qp, IBV_WC_SUCCESS);
	assert_int_equal(collect(&c, 1), 1);
	assert_ptr_equal(c.ctx, (void *)1);
	assert_int_equal(c.status, 0);
}

/* The peer disconnects with work in flight: the queue pair is put in
 * error (whatever the library did), so its work ends, with a link error. */
static void peer_disconnect_fails_work_in_flight(void **state)
{
	struct ibv_qp *qp = NULL;
	struct fab_cqe c[2];
	fab_peer_t p = insert("10.0.0.2", 7200);

	(void)state;
	assert_int_equal(fab_read(ep, p, mr, 0, &rk, 0, 64, (void *)1), 0);
	await_posted(&qp, 1);
	ev_push(M.last_id, RDMA_CM_EVENT_DISCONNECTED, NULL, 0);
	assert_int_equal(collect(c, 1), 1);
	assert_int_equal(M.disconnects, 2); /* on the event, then retired */
	assert_int_equal(c[0].status, ECONNRESET);
	assert_int_equal(M.qps, 0);
}

/* Removing a peer cancels what it was sent; the queue pair is emptied
 * before it goes. */
static void removing_a_peer_cancels_its_work(void **state)
{
	struct ibv_qp *qp = NULL;
	struct fab_cqe c[2];
	fab_peer_t p = insert("10.0.0.2", 7200);

	(void)state;
	assert_int_equal(fab_write(ep, p, mr, 0, &rk, 0, 64, (void *)1), 0);
	await_posted(&qp, 1);
	assert_int_equal(fab_peer_remove(ep, p), 0);
	assert_int_equal(M.disconnects, 1);
	assert_int_equal(collect(c, 1), 1);
	assert_int_equal(c[0].status, ECANCELED);
	assert_int_equal(M.qps, 0);
}

static void incoming(const char *ip, unsigned port, bool hello,
		     struct rdma_cm_id **id_out)
{
	struct rdma_cm_id *id;
	struct fvb_hello h = { .magic = FVB_HELLO_MAGIC,
			       .version = FVB_HELLO_VERSION,
			       .addr_len = sizeof(struct sockaddr_in),
			       .nonce = 5 };
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons((uint16_t)port) };

	inet_pton(AF_INET, ip, &sa.sin_addr);
	memcpy(h.addr, &sa, sizeof(sa));
	__wrap_rdma_create_id(NULL, &id, NULL, RDMA_PS_TCP);
	id->verbs = &M.ctx;
	ev_push(id, RDMA_CM_EVENT_CONNECT_REQUEST, hello ? &h : NULL,
		hello ? sizeof(h) : 0);
	*id_out = id;
}

/* A message on an accepted connection names its sender by the address
 * the sender said it listens on. */
static void incoming_messages_name_their_sender(void **state)
{
	struct rdma_cm_id *from2, *from3;
	struct fab_cqe c;
	fab_peer_t p2, p3;

	(void)state;
	p2 = insert("10.0.0.2", 7200);
	p3 = insert("10.0.0.3", 7300);
	incoming("10.0.0.3", 7300, true, &from3);
	incoming("10.0.0.9", 7900, true, &from2); /* not a peer of ours */
	quiet(5);
	assert_int_equal(M.accepts, 2);
	assert_int_equal(M.min_rnr_timer, FVB_MIN_RNR_TIMER);
	deliver(from3->qp->qp_num, 10, IBV_WC_SUCCESS);
	assert_int_equal(collect(&c, 1), 1);
	assert_int_equal(c.op, FAB_OP_RECV);
	assert_int_equal(c.status, 0);
	assert_int_equal(c.len, 10);
	assert_int_equal(c.peer, p3);
	deliver(from2->qp->qp_num, 4, IBV_WC_SUCCESS);
	assert_int_equal(collect(&c, 1), 1);
	assert_int_equal(c.peer, FAB_PEER_NONE);
	(void)p2;
	/* Receive buffers go back to the device. */
	quiet(2);
	assert_int_equal(M.nrx, RX);
	/* A disconnected caller's connection goes once the CQ is empty (the
	 * event is seen at a poll: on a loaded machine, after a while). */
	ev_push(from3, RDMA_CM_EVENT_DISCONNECTED, NULL, 0);
	for (int i = 0; i < 1000 && M.qps != 1; i++)
		quiet(1);
	assert_int_equal(M.qps, 1);
}

/* A caller that restarted connects again without the old connection ever
 * hearing of it: the new one ends the old, whose messages still waiting
 * keep their sender. */
static void a_new_connection_from_a_caller_ends_its_old_one(void **state)
{
	struct rdma_cm_id *old, *fresh;
	struct fab_cqe c;
	fab_peer_t p3 = insert("10.0.0.3", 7300);
	uint32_t old_qpn;

	(void)state;
	incoming("10.0.0.3", 7300, true, &old);
	quiet(5);
	old_qpn = old->qp->qp_num;
	deliver(old_qpn, 7, IBV_WC_SUCCESS); /* still in the CQ... */
	incoming("10.0.0.3", 7300, true, &fresh);
	usleep(2000);
	assert_int_equal(collect(&c, 1), 1); /* ...named after the new one came */
	assert_int_equal(c.len, 7);
	assert_int_equal(c.peer, p3);
	quiet(5);
	assert_int_equal(M.accepts, 2);
	assert_int_equal(M.disconnects, 1);
	assert_int_equal(M.qps, 1); /* the old one is gone */
	deliver(fresh->qp->qp_num, 9, IBV_WC_SUCCESS);
	assert_int_equal(collect(&c, 1), 1);
	assert_int_equal(c.peer, p3);
}

/* Connection requests without our hello, or naming no usable address,
 * are refused and leave nothing behind. */
static void garbage_connection_requests_are_refused(void **state)
{
	struct rdma_cm_id *id;
	int ids;

	(void)state;
	ids = M.ids;
	incoming("10.0.0.3", 7300, false, &id);
	quiet(5);
	assert_int_equal(M.rejects, 1);
	incoming("0.0.0.0", 7300, true, &id); /* a wildcard is no address */
	quiet(5);
	assert_int_equal(M.rejects, 2);
	M.qp_fail = EINVAL; /* the caller went away meanwhile */
	incoming("10.0.0.3", 7300, true, &id);
	quiet(5);
	M.qp_fail = 0;
	assert_int_equal(M.rejects, 3);
	assert_int_equal(M.accepts, 0);
	assert_int_equal(M.qps, 0);
	assert_int_equal(M.ids, ids);
}

/* A receive that failed (a message longer than the buffer) is reported
 * with its error, and its buffer posted again. */
static void failed_receive_is_reported_and_reposted(void **state)
{
	struct rdma_cm_id *id;
	struct fab_cqe c;

	(void)state;
	incoming("10.0.0.3", 7300, true, &id);
	quiet(5);
	log_warnings = 0;
	deliver(id->qp->qp_num, 0, IBV_WC_LOC_LEN_ERR);
	assert_int_equal(collect(&c, 1), 1);
	assert_int_equal(c.op, FAB_OP_RECV);
	assert_int_equal(c.status, EMSGSIZE);
	assert_int_equal(log_warnings, 1);
	quiet(2);
	assert_int_equal(M.nrx, RX);
}

/* A key wider than a verbs key cannot be one: refused as the target
 * would refuse it, nothing posted. */
static void key_no_device_has_is_refused(void **state)
{
	struct ibv_qp *qp = NULL;
	struct fab_rkey wide = rk;
	struct fab_cqe c;
	fab_peer_t p = insert("10.0.0.2", 7200);

	(void)state;
	assert_int_equal(fab_read(ep, p, mr, 0, &rk, 0, 8, NULL), 0);
	await_posted(&qp, 1);
	complete_one(qp, IBV_WC_SUCCESS);
	assert_int_equal(collect(&c, 1), 1);
	wide.key = UINT64_C(1) << 40 | 0x77;
	assert_int_equal(fab_write(ep, p, mr, 0, &wide, 0, 8, (void *)9), 0);
	assert_int_equal(collect(&c, 1), 1);
	assert_ptr_equal(c.ctx, (void *)9);
	assert_int_equal(c.status, EACCES);
	assert_int_equal(M.posted_total, 1);
}

/* Before sleeping: completions that arrived before the queue was armed
 * are found (not slept over), and delivered by the next poll. */
static void trywait_finds_what_came_before_arming(void **state)
{
	struct rdma_cm_id *id;
	struct fab_cqe c;
	int fd;

	(void)state;
	assert_int_equal(fab_ep_wait_fd(ep, &fd), 0);
	incoming("10.0.0.3", 7300, true, &id);
	while (fab_ep_trywait(ep) == EAGAIN) /* the connection events */
		assert_int_equal(fab_ep_poll(ep, &c, 1, &(size_t){ 0 }), 0);
	assert_int_equal(M.accepts, 1);
	M.notify_armed = 0;
	deliver(id->qp->qp_num, 3, IBV_WC_SUCCESS);
	assert_int_equal(fab_ep_trywait(ep), EAGAIN);
	assert_int_equal(M.notify_armed, 1);
	assert_int_equal(M.cq_n, 0); /* taken, kept for the poll */
	assert_int_equal(collect(&c, 1), 1);
	assert_int_equal(c.len, 3);
	quiet(2);
	assert_int_equal(fab_ep_trywait(ep), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(open_and_close_release_everything,
						setup, teardown),
		cmocka_unit_test_setup_teardown(no_device_is_enodev_and_leaves_nothing,
						setup, teardown),
		cmocka_unit_test_setup_teardown(first_send_connects_then_posts_in_order,
						setup, teardown),
		cmocka_unit_test_setup_teardown(reads_and_writes_post_one_sided_work,
						setup, teardown),
		cmocka_unit_test_setup_teardown(remote_access_error_ends_one_operation,
						setup, teardown),
		cmocka_unit_test_setup_teardown(flushed_work_fails_if_the_peer_restarted,
						setup, teardown),
		cmocka_unit_test_setup_teardown(queue_pair_in_error_fails_its_work_then_reconnects,
						setup, teardown),
		cmocka_unit_test_setup_teardown(peer_gone_fails_by_link_then_deadline,
						setup, teardown),
		cmocka_unit_test_setup_teardown(an_unanswered_connect_is_tried_again,
						setup, teardown),
		cmocka_unit_test_setup_teardown(peer_disconnect_fails_work_in_flight,
						setup, teardown),
		cmocka_unit_test_setup_teardown(removing_a_peer_cancels_its_work,
						setup, teardown),
		cmocka_unit_test_setup_teardown(incoming_messages_name_their_sender,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_new_connection_from_a_caller_ends_its_old_one,
						setup, teardown),
		cmocka_unit_test_setup_teardown(garbage_connection_requests_are_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(failed_receive_is_reported_and_reposted,
						setup, teardown),
		cmocka_unit_test_setup_teardown(key_no_device_has_is_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(trywait_finds_what_came_before_arming,
						setup, teardown),
	};

	return cmocka_run_group_tests_name("fab_verbs", tests, NULL, NULL);
}
