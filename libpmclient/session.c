/*
 * session.c - the connection to the local pmd: one SEQPACKET socket,
 * one request in flight on it at a time (pm->lock), replies checked as
 * strictly as the pmd checks requests; a request with a fixed reply
 * through the ring when it can (ring.c); connect (with the fault
 * session, the I/O window and the ring) and disconnect.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"

void pmc_close_fds(int *fds, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		close(fds[i]);
}

bool pmc_reply_hdr_ok(const struct pm_msg_hdr *h, uint32_t len,
		      uint16_t type, uint32_t seq)
{
	return h->magic == PM_PROTO_MAGIC && h->version == PM_PROTO_VERSION &&
	       h->length == len && h->type == (type | PM_MSG_REPLY) &&
	       h->seq == seq;
}

error_t pmc_rpc(struct pm *pm, struct pmc_rpc *r)
{
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)pm->tx;
	uint32_t len = sizeof(*h) + r->req_len + r->data_len;
	struct iovec iov[3] = {
		{ .iov_base = h, .iov_len = sizeof(*h) },
		{ .iov_base = (void *)r->req, .iov_len = r->req_len },
		{ .iov_base = (void *)r->data, .iov_len = r->data_len },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 3 };
	union {
		char buf[CMSG_SPACE(sizeof(int) * PM_MAP_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	const struct pm_msg_hdr *rh = (const struct pm_msg_hdr *)pm->rx;
	const struct pm_reply *rep = (const struct pm_reply *)(rh + 1);
	ssize_t n;

	r->nfds = 0;
	r->body_len = 0;
	if (__atomic_load_n(&pm->broken, __ATOMIC_RELAXED))
		return ECONNRESET;
	if (len > PM_MSG_MAX)
		return EMSGSIZE;
	pm_msg_hdr_init(h, r->type, len, ++pm->seq);
	do
		n = sendmsg(pm->fd, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		goto broken;

	struct iovec riov = { .iov_base = pm->rx, .iov_len = sizeof(pm->rx) };
	struct msghdr rmsg = { .msg_iov = &riov, .msg_iovlen = 1,
			       .msg_control = ctl.buf,
			       .msg_controllen = sizeof(ctl.buf) };
	do
		n = recvmsg(pm->fd, &rmsg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		goto broken;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&rmsg); c;
	     c = CMSG_NXTHDR(&rmsg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		uint32_t k = (uint32_t)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int got[PM_MAP_FDS_MAX];
		memcpy(got, CMSG_DATA(c), sizeof(int) * k);
		for (uint32_t i = 0; i < k; i++) {
			if (r->fds && r->nfds < r->fds_max)
				r->fds[r->nfds++] = got[i];
			else
				close(got[i]);
		}
	}
	if ((rmsg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    (size_t)n < PM_REPLY_HDR ||
	    !pmc_reply_hdr_ok(rh, (uint32_t)n, r->type, pm->seq))
		goto proto;
	r->culprit = rep->culprit;
	r->body_len = (uint32_t)n - (uint32_t)PM_REPLY_HDR;
	if (r->body_len > r->body_max)
		goto proto;
	if (r->body && r->body_len)
		memcpy(r->body, rep + 1, r->body_len);
	if (rep->status != PM_ST_OK) {
		pmc_close_fds(r->fds, r->nfds);
		r->nfds = 0;
	}
	return pm_status_to_errno(rep->status);

proto:
	pmc_close_fds(r->fds, r->nfds);
	r->nfds = 0;
	__atomic_store_n(&pm->broken, true, __ATOMIC_RELAXED); /* the stream cannot be trusted any more */
	return EPROTO;
broken:
	__atomic_store_n(&pm->broken, true, __ATOMIC_RELAXED);
	return ECONNRESET;
}

error_t pmc_request(struct pm *pm, struct pmc_rpc *r)
{
	error_t err = pmc_ring_call(pm, r);

	if (err != PMC_USE_SOCKET)
		return err;
	pthread_mutex_lock(&pm->lock);
	err = pmc_rpc(pm, r);
	pthread_mutex_unlock(&pm->lock);
	return err;
}

/* A request with a fixed reply body (or none). */
error_t pmc_call(pm_t *pm, uint16_t type, const void *req, uint32_t req_len,
		 void *body, uint32_t body_len, uint64_t *culprit)
{
	struct pmc_rpc r = { .type = type, .req = req, .req_len = req_len,
			     .body = body, .body_max = body_len };
	error_t err;

	if (!pm)
		return EINVAL;
	err = pmc_request(pm, &r);
	if (!err && r.body_len != body_len) {
		__atomic_store_n(&pm->broken, true, __ATOMIC_RELAXED);
		err = EPROTO;
	}
	if (culprit)
		*culprit = r.culprit;
	return err;
}

error_t pmc_call_handle(pm_t *pm, uint16_t type, container_t c)
{
	struct pm_handle_req req = { .handle = c };

	return pmc_call(pm, type, &req, sizeof(req), NULL, 0, NULL);
}

/*
 * Mappings follow moved frames when the kernel lets us have a
 * userfaultfd; otherwise say so, once per process, and the pmd will not
 * move frames that this task maps (it knows: no fault session attached).
 */
static void follow_start(struct pm *pm)
{
	static int said;
	struct pm_attach_key_rep key;
	const char *why = NULL;
	const char *env = getenv("PM_NO_USERFAULTFD");
	error_t err;

	if (env && *env && strcmp(env, "0"))
		return; /* asked for: nothing to say */
	err = pmc_follow_open(&pm->follow, &why);
	if (err)
		goto off;
	err = pmc_call(pm, PM_MSG_ATTACH_KEY, NULL, 0, &key, sizeof(key), NULL);
	if (err) {
		why = "the pmd refused a fault session";
		goto off;
	}
	err = pmc_follow_attach(&pm->follow, pm->path, pm->task, key.key,
				pmc_seg_fd, pm->fastpath ? pmc_local_place : NULL,
				pmc_reclaim_post, pm, &why);
	if (err)
		goto off;
	return;
off:
	pmc_follow_fini(&pm->follow);
	pmc_follow_init(&pm->follow);
	if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "libpmclient: mappings will not follow moved "
			"frames: %s%s%s%s; the pmd keeps this task's mapped "
			"frames in place\n", why, err ? " (" : "",
			err ? strerror(err) : "", err ? ")" : "");
}

/*
 * The session's I/O window: shared memory the pmd maps too, through which
 * reads and writes pass their bytes, so that the pmd's RDMA to and from
 * remote frames lands in it directly. Without one (PM_NO_WINDOW=1, or a
 * pmd that could not make it) the bytes travel in the messages.
 */
void pmc_window_open(struct pm *pm)
{
	const char *env = getenv("PM_NO_WINDOW");
	struct pm_window_rep rep;
	int fd = -1;
	struct pmc_rpc r = { .type = PM_MSG_WINDOW, .body = &rep,
			     .body_max = sizeof(rep), .fds = &fd, .fds_max = 1 };
	error_t err;
	void *m;

	if ((env && *env && strcmp(env, "0")) || pm->win)
		return;
	err = pmc_rpc(pm, &r);
	if (err || r.body_len != sizeof(rep) || r.nfds != 1 ||
	    rep.size != PM_IO_MAX) {
		if (fd >= 0)
			close(fd);
		return;
	}
	m = mmap(NULL, PM_IO_MAX, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (m != MAP_FAILED)
		pm->win = m;
}

void pmc_window_drop(struct pm *pm)
{
	if (pm->win)
		munmap(pm->win, PM_IO_MAX);
	pm->win = NULL;
}

error_t pm_connect(const char *endpoint, pm_t **pm_out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pm_hello_req req = { .version = PM_HELLO_UNSHARED };
	struct pm_hello_rep rep;
	struct pm *pm;
	error_t err;

	if (!pm_out)
		return EINVAL;
	if (!endpoint)
		endpoint = getenv("PM_ENDPOINT");
	if (!endpoint || !*endpoint)
		endpoint = PM_DEFAULT_SOCKET;
	if (!strncmp(endpoint, "unix:", 5))
		endpoint += 5;
	if (strlen(endpoint) >= sizeof(sa.sun_path))
		return ENAMETOOLONG;
	strcpy(sa.sun_path, endpoint);

	pm = calloc(1, sizeof(*pm));
	if (!pm)
		return ENOMEM;
	pthread_mutex_init(&pm->lock, NULL);
	pmc_follow_init(&pm->follow);
	pmc_reclaim_init(pm);
	strcpy(pm->path, endpoint);
	pm->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (pm->fd < 0) {
		err = errno;
		goto free_pm;
	}
	if (connect(pm->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		err = errno;
		goto close_fd;
	}
	err = pmc_call(pm, PM_MSG_HELLO, &req, sizeof(req), &rep, sizeof(rep), NULL);
	if (err)
		goto close_fd;
	if (rep.frame_size != PM_FRAME_SIZE || rep.io_max == 0 ||
	    rep.io_max > PM_IO_MAX || rep.map_max == 0 ||
	    rep.map_max > PM_MAP_MAX) {
		err = EPROTO;
		goto close_fd;
	}
	pm->task = rep.task;
	pm->node = rep.node;
	/* For measurement and debugging: every map asks the pmd. */
	const char *nf = getenv("PM_NO_FASTPATH");
	pm->fastpath = !(nf && *nf && strcmp(nf, "0"));
	pm->io_max = rep.io_max;
	pm->map_max = rep.map_max;
	follow_start(pm);
	pthread_mutex_lock(&pm->lock);
	pmc_window_open(pm);
	pmc_ring_open(pm);
	pthread_mutex_unlock(&pm->lock);
	*pm_out = pm;
	return 0;

close_fd:
	close(pm->fd);
free_pm:
	pmc_follow_fini(&pm->follow);
	pmc_reclaim_fini(pm);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
	return err;
}

void pm_disconnect(pm_t *pm)
{
	if (!pm)
		return;
	pmc_reclaim_fini(pm); /* a handler call ends first */
	pmc_follow_fini(&pm->follow);
	close(pm->fd);
	pmc_window_drop(pm);
	pmc_ring_close(pm);
	pmc_fast_fini(pm);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

error_t pm_self(pm_t *pm, pm_task_t *task)
{
	if (!pm || !task)
		return EINVAL;
	*task = pm->task;
	return 0;
}
