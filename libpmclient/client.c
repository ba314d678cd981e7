/*
 * client.c - libpmclient: a task's session with its local pmd.
 *
 * One pm_t is one SEQPACKET connection. Calls are thread-safe: a mutex
 * keeps one request in flight per session and serialises every change to
 * the session's tables. Replies are checked as strictly as the pmd checks
 * requests: a reply that breaks the wire format is EPROTO, and a pmd that
 * went away is ECONNRESET for every later call.
 *
 * The local fast path: every segment the pmd passes is mapped whole, once,
 * read-only and read/write; every container mapped once comes with its
 * frame view (pm_proto.h). A map of frames the view shows resident in
 * segments we hold is then a look-up and pointer arithmetic (one mmap per
 * run when the frames are scattered), with no message. The fast path reads
 * the two directories below without the lock: entries are published with
 * release stores and never freed before pm_disconnect.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <pm/pm.h>

#include "follow.h"
#include "pm_proto.h"

#define SEG_BYTES ((size_t)PM_SEGMENT_SLOTS * PM_FRAME_SIZE)
#define DIR_BITS  12                       /* two-level directories */
#define DIR_SIZE  (1u << DIR_BITS)
#define DIR_MAX   (DIR_SIZE * DIR_SIZE)    /* indices they can hold */
/* Whole-segment views live in one reserved range (address space only),
 * so that telling them apart at unmap is one comparison, without a lock. */
#define VIEW_PAIRS 16384u                  /* segments: 32 GiB of frames */
#define VIEW_SPAN  ((size_t)VIEW_PAIRS * 2 * SEG_BYTES)

/* The frame the fast path last gave out a slot's address for. */
struct pmc_rev {
	container_t cont;
	frame_t frame;
};

/* A segment we hold, mapped whole. Never freed before disconnect. */
struct pmc_seg {
	uint64_t id;          /* (C) segment id */
	int fd;               /* (C) our descriptor of its memfd */
	uint8_t *ro, *rw;     /* (C) read-only and read/write views */
	struct pmc_rev *rev;  /* (F) by slot, when following; NULL: none yet */
	struct pmc_seg *next; /* (M) in pm->all_segs */
};

/* A container's frame view, mapped read-only. */
struct pmc_view {
	uint64_t id;                  /* (C) view id */
	const struct pm_view_hdr *hdr;/* (C) */
	size_t bytes;                 /* (C) */
	struct pmc_view *next;        /* (M) in pm->all_views */
};

/* handle -> view, at the handle's index. */
struct pmc_hview {
	container_t handle;           /* (A) */
	struct pmc_view *view;        /* (A) */
};

struct pm {
	int fd;                        /* (C) the connection */
	pthread_mutex_t lock;          /* guards everything below */
	uint32_t seq;                  /* last request's sequence number */
	bool broken;                   /* the connection failed: ECONNRESET */
	pm_task_t task;                /* (C) after HELLO */
	pm_node_t node;                /* (C) */
	uint32_t io_max, map_max;      /* (C) */
	struct pmc_seg **segdir[DIR_SIZE];   /* (A) by segment index */
	struct pmc_hview *hdir[DIR_SIZE];    /* (A) by handle index */
	struct pmc_seg *all_segs;            /* every segment we hold */
	struct pmc_view *all_views;          /* every view we hold */
	bool fastpath;                 /* (C) off with PM_NO_FASTPATH=1 */
	uint8_t *vbase;                /* (A) reserved range for segment views */
	size_t vnext;                  /* next free view pair in it */
	bool views_outside;            /* (A) some views had to go elsewhere */
	struct pmc_follow follow;      /* mappings that follow frames */
	uint8_t *win;                  /* (C) the session's I/O window, or
	                                * NULL: reads and writes then carry
	                                * their bytes in the messages */
	char path[108];                /* (C) the pmd's socket */
	pm_reclaim_fn reclaim_fn;      /* extra-frame upcall */
	void *reclaim_arg;
	uint8_t tx[PM_MSG_MAX] __attribute__((aligned(16)));
	uint8_t rx[PM_MSG_MAX + 1] __attribute__((aligned(16)));
};

static void hview_set(struct pm *pm, container_t h, struct pmc_view *v);

/* One request and its reply. body/fds describe the reply's payload;
 * culprit (if not NULL) receives reply.culprit whatever the status.
 * Must hold pm->lock. */
struct rpc {
	uint16_t type;
	const void *req;
	uint32_t req_len;
	const void *data;      /* appended after req (WRITE) */
	uint32_t data_len;
	void *body;            /* copy of the reply body, up to body_max */
	uint32_t body_max;
	uint32_t body_len;     /* out */
	int *fds;              /* received descriptors, up to fds_max */
	uint32_t fds_max;
	uint32_t nfds;         /* out */
	uint64_t culprit;      /* out */
};

static void close_fds(int *fds, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		close(fds[i]);
}

static error_t rpc_call(struct pm *pm, struct rpc *r)
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
	if (pm->broken)
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
	    (size_t)n < PM_REPLY_HDR || rh->magic != PM_PROTO_MAGIC ||
	    rh->version != PM_PROTO_VERSION || rh->length != (uint32_t)n ||
	    rh->type != (r->type | PM_MSG_REPLY) || rh->seq != pm->seq)
		goto proto;
	r->culprit = rep->culprit;
	r->body_len = (uint32_t)n - (uint32_t)PM_REPLY_HDR;
	if (r->body_len > r->body_max)
		goto proto;
	if (r->body && r->body_len)
		memcpy(r->body, rep + 1, r->body_len);
	if (rep->status != PM_ST_OK) {
		close_fds(r->fds, r->nfds);
		r->nfds = 0;
	}
	return pm_status_to_errno(rep->status);

proto:
	close_fds(r->fds, r->nfds);
	r->nfds = 0;
	pm->broken = true; /* the stream cannot be trusted any more */
	return EPROTO;
broken:
	pm->broken = true;
	return ECONNRESET;
}

/* A request with a fixed reply body (or none). */
static error_t call(pm_t *pm, uint16_t type, const void *req, uint32_t req_len,
		    void *body, uint32_t body_len, uint64_t *culprit)
{
	struct rpc r = { .type = type, .req = req, .req_len = req_len,
			 .body = body, .body_max = body_len };
	error_t err;

	if (!pm)
		return EINVAL;
	pthread_mutex_lock(&pm->lock);
	err = rpc_call(pm, &r);
	if (!err && r.body_len != body_len) {
		pm->broken = true;
		err = EPROTO;
	}
	pthread_mutex_unlock(&pm->lock);
	if (culprit)
		*culprit = r.culprit;
	return err;
}

static struct pmc_seg *seg_get(struct pm *pm, uint64_t id);
static bool local_place(void *arg, uint64_t seg, uint32_t slot, container_t c,
			frame_t f, struct pmc_place *out);

static int seg_fd(void *arg, uint64_t id)
{
	struct pmc_seg *g = seg_get(arg, id);

	return g ? g->fd : -1;
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
	err = call(pm, PM_MSG_ATTACH_KEY, NULL, 0, &key, sizeof(key), NULL);
	if (err) {
		why = "the pmd refused a fault session";
		goto off;
	}
	err = pmc_follow_attach(&pm->follow, pm->path, pm->task, key.key,
				seg_fd, pm->fastpath ? local_place : NULL, pm,
				&why);
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
static void window_start(struct pm *pm)
{
	const char *env = getenv("PM_NO_WINDOW");
	struct pm_window_rep rep;
	int fd = -1;
	struct rpc r = { .type = PM_MSG_WINDOW, .body = &rep,
			 .body_max = sizeof(rep), .fds = &fd, .fds_max = 1 };
	error_t err;
	void *m;

	if (env && *env && strcmp(env, "0"))
		return;
	pthread_mutex_lock(&pm->lock);
	err = rpc_call(pm, &r);
	pthread_mutex_unlock(&pm->lock);
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

error_t pm_connect(const char *endpoint, pm_t **pm_out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pm_hello_req req = { .version = PM_PROTO_VERSION };
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
	err = call(pm, PM_MSG_HELLO, &req, sizeof(req), &rep, sizeof(rep), NULL);
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
	window_start(pm);
	*pm_out = pm;
	return 0;

close_fd:
	close(pm->fd);
free_pm:
	pmc_follow_fini(&pm->follow);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
	return err;
}

void pm_disconnect(pm_t *pm)
{
	if (!pm)
		return;
	pmc_follow_fini(&pm->follow);
	close(pm->fd);
	if (pm->win)
		munmap(pm->win, PM_IO_MAX);
	for (struct pmc_seg *g = pm->all_segs, *n; g; g = n) {
		n = g->next;
		munmap(g->ro, SEG_BYTES);
		munmap(g->rw, SEG_BYTES);
		close(g->fd);
		free(g->rev);
		free(g);
	}
	if (pm->vbase)
		munmap(pm->vbase, VIEW_SPAN); /* the views in it go too */
	for (struct pmc_view *v = pm->all_views, *n; v; v = n) {
		n = v->next;
		munmap((void *)v->hdr, v->bytes);
		free(v);
	}
	for (unsigned i = 0; i < DIR_SIZE; i++) {
		free(pm->segdir[i]);
		free(pm->hdir[i]);
	}
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

error_t pm_task_stat(pm_t *pm, struct pm_task_stat *st)
{
	struct pm_task_stat_rep rep;
	error_t err;

	if (!st)
		return EINVAL;
	err = call(pm, PM_MSG_TASK_STAT, NULL, 0, &rep, sizeof(rep), NULL);
	if (err)
		return err;
	memset(st, 0, sizeof(*st));
	st->task = rep.task;
	st->guaranteed = rep.guaranteed;
	st->extra_limit = rep.extra_limit;
	st->allocated = rep.allocated;
	st->extra_allocated = rep.extra_allocated;
	st->containers = rep.containers;
	st->uid = rep.uid;
	st->pid = rep.pid;
	return 0;
}

error_t pm_container_create(pm_t *pm, container_t *container)
{
	struct pm_handle_rep rep;
	error_t err;

	if (!container)
		return EINVAL;
	err = call(pm, PM_MSG_CREATE, NULL, 0, &rep, sizeof(rep), NULL);
	if (!err)
		*container = rep.handle;
	return err;
}

static error_t call_handle(pm_t *pm, uint16_t type, container_t c)
{
	struct pm_handle_req req = { .handle = c };

	return call(pm, type, &req, sizeof(req), NULL, 0, NULL);
}

error_t pm_container_destroy(pm_t *pm, container_t container)
{
	error_t err = call_handle(pm, PM_MSG_DESTROY, container);

	if (!err) {
		pthread_mutex_lock(&pm->lock);
		hview_set(pm, container, NULL);
		pthread_mutex_unlock(&pm->lock);
	}
	return err;
}

error_t pm_container_stat(pm_t *pm, container_t container,
			  struct pm_container_stat *st)
{
	struct pm_handle_req req = { .handle = container };
	struct pm_stat_rep rep;
	error_t err;

	if (!st)
		return EINVAL;
	err = call(pm, PM_MSG_STAT, &req, sizeof(req), &rep, sizeof(rep), NULL);
	if (err)
		return err;
	memset(st, 0, sizeof(*st));
	st->home = rep.home;
	st->frames = rep.frames;
	st->resident = rep.resident;
	st->remote = rep.remote;
	st->swapped = rep.swapped;
	st->cow = rep.cow;
	st->locked_ms_left = rep.locked_ms_left;
	return 0;
}

error_t pm_container_set_policy(pm_t *pm, container_t container, int policy,
				pm_node_t node)
{
	struct pm_policy_req req = { .handle = container,
				     .policy = (uint32_t)policy, .node = node };

	if (policy < 0)
		return EINVAL;
	return call(pm, PM_MSG_SET_POLICY, &req, sizeof(req), NULL, 0, NULL);
}

error_t pm_container_share(pm_t *pm, container_t container, pm_task_t remote,
			   container_t *weak_ref)
{
	struct pm_share_req req = { .handle = container, .task = remote };
	struct pm_handle_rep rep;
	error_t err;

	if (!weak_ref)
		return EINVAL;
	err = call(pm, PM_MSG_SHARE, &req, sizeof(req), &rep, sizeof(rep), NULL);
	if (!err)
		*weak_ref = rep.handle;
	return err;
}

error_t pm_cap_export(pm_t *pm, container_t ref, pm_cap_token_t *token)
{
	struct pm_handle_req req = { .handle = ref };
	struct pm_token rep;
	error_t err;

	if (!token)
		return EINVAL;
	err = call(pm, PM_MSG_EXPORT, &req, sizeof(req), &rep, sizeof(rep), NULL);
	if (!err)
		memcpy(token->bytes, rep.bytes, sizeof(token->bytes));
	return err;
}

error_t pm_cap_import(pm_t *pm, const pm_cap_token_t *token, container_t *ref)
{
	struct pm_token req;
	struct pm_handle_rep rep;
	error_t err;

	if (!token || !ref)
		return EINVAL;
	memcpy(req.bytes, token->bytes, sizeof(req.bytes));
	err = call(pm, PM_MSG_IMPORT, &req, sizeof(req), &rep, sizeof(rep), NULL);
	if (!err)
		*ref = rep.handle;
	return err;
}

error_t pm_container_unshare(pm_t *pm, container_t container, pm_task_t remote)
{
	struct pm_share_req req = { .handle = container, .task = remote };

	return call(pm, PM_MSG_UNSHARE, &req, sizeof(req), NULL, 0, NULL);
}

error_t pm_cap_release(pm_t *pm, container_t ref)
{
	error_t err = call_handle(pm, PM_MSG_RELEASE, ref);

	if (!err) {
		pthread_mutex_lock(&pm->lock);
		hview_set(pm, ref, NULL);
		pthread_mutex_unlock(&pm->lock);
	}
	return err;
}

error_t pm_container_allocate(pm_t *pm, container_t container, frame_t start,
			      int *count, int flags)
{
	struct pm_alloc_req req = { .handle = container, .start = start,
				    .flags = (uint32_t)flags };
	struct pm_alloc_rep rep = { 0 };
	struct rpc r = { .type = PM_MSG_ALLOCATE, .req = &req,
			 .req_len = sizeof(req), .body = &rep,
			 .body_max = sizeof(rep) };
	error_t err;

	if (!pm || !count)
		return EINVAL;
	if (*count <= 0) {
		*count = 0;
		return EINVAL;
	}
	req.count = (uint32_t)*count;
	pthread_mutex_lock(&pm->lock);
	err = rpc_call(pm, &r);
	if (r.body_len == sizeof(rep)) {
		*count = (int)rep.count; /* written on error too */
	} else {
		*count = 0;
		if (!err || err != ECONNRESET) {
			pm->broken = true;
			err = err == ECONNRESET ? err : EPROTO;
		}
	}
	pthread_mutex_unlock(&pm->lock);
	return err;
}

error_t pm_container_deallocate(pm_t *pm, container_t container, frame_t start,
				int count)
{
	struct pm_dealloc_req req = { .handle = container, .start = start,
				      .count = (uint32_t)count };

	if (count <= 0)
		return EINVAL;
	return call(pm, PM_MSG_DEALLOCATE, &req, sizeof(req), NULL, 0, NULL);
}

/* The segment with this id, or NULL. Lock-free. */
static struct pmc_seg *seg_get(struct pm *pm, uint64_t id)
{
	uint32_t index = (uint32_t)id;
	struct pmc_seg **chunk, *g;

	if (index >= DIR_MAX)
		return NULL;
	chunk = __atomic_load_n(&pm->segdir[index >> DIR_BITS], __ATOMIC_ACQUIRE);
	if (!chunk)
		return NULL;
	g = __atomic_load_n(&chunk[index & (DIR_SIZE - 1)], __ATOMIC_ACQUIRE);
	return g && g->id == id ? g : NULL;
}

/* Where the next segment's two views go: in the reserved range while it
 * lasts (NULL, NULL: anywhere). Must hold pm->lock. */
static void view_place(struct pm *pm, uint8_t **ro, uint8_t **rw)
{
	*ro = *rw = NULL;
	if (!pm->vbase && !pm->views_outside) {
		void *p = mmap(NULL, VIEW_SPAN, PROT_NONE, MAP_PRIVATE |
			       MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p != MAP_FAILED)
			__atomic_store_n(&pm->vbase, (uint8_t *)p, __ATOMIC_RELEASE);
	}
	if (!pm->vbase || pm->vnext == VIEW_PAIRS) {
		__atomic_store_n(&pm->views_outside, true, __ATOMIC_RELEASE);
		return;
	}
	*ro = pm->vbase + pm->vnext * 2 * SEG_BYTES;
	*rw = *ro + SEG_BYTES;
	pm->vnext++;
}

/* Undoes one view of a failed seg_add; inside the reserved range the
 * place is reserved again, never left for another mapping to take. */
static void view_release(struct pm *pm, uint8_t *view)
{
	if (view == MAP_FAILED || !view)
		return;
	if (pm->vbase && view >= pm->vbase && view < pm->vbase + VIEW_SPAN)
		mmap(view, SEG_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
		     MAP_NORESERVE | MAP_FIXED, -1, 0);
	else
		munmap(view, SEG_BYTES);
}

/* Takes fd as segment id's descriptor and maps the segment whole (closing
 * fd if we hold the segment already). Must hold pm->lock. */
static error_t seg_add(struct pm *pm, uint64_t id, int fd)
{
	uint32_t index = (uint32_t)id;
	struct pmc_seg **chunk, *g;
	uint8_t *want_ro = NULL, *want_rw = NULL;
	error_t err = 0;

	if (seg_get(pm, id)) {
		close(fd);
		return 0;
	}
	if (index >= DIR_MAX) {
		err = ENOMEM;
		goto close_fd;
	}
	chunk = pm->segdir[index >> DIR_BITS];
	if (!chunk) {
		chunk = calloc(DIR_SIZE, sizeof(*chunk));
		if (!chunk) {
			err = ENOMEM;
			goto close_fd;
		}
		__atomic_store_n(&pm->segdir[index >> DIR_BITS], chunk,
				 __ATOMIC_RELEASE);
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		err = ENOMEM;
		goto close_fd;
	}
	g->id = id;
	g->fd = fd;
	view_place(pm, &want_ro, &want_rw);
	g->ro = mmap(want_ro, SEG_BYTES, PROT_READ,
		     MAP_SHARED | (want_ro ? MAP_FIXED : 0), fd, 0);
	g->rw = mmap(want_rw, SEG_BYTES, PROT_READ | PROT_WRITE,
		     MAP_SHARED | (want_rw ? MAP_FIXED : 0), fd, 0);
	if (g->ro == MAP_FAILED || g->rw == MAP_FAILED) {
		err = errno;
		goto unmap;
	}
	err = pmc_follow_add(&pm->follow, g->ro, SEG_BYTES, id, 0, PROT_READ,
			     0, 0);
	if (!err)
		err = pmc_follow_add(&pm->follow, g->rw, SEG_BYTES, id, 0,
				     PROT_READ | PROT_WRITE, 0, 0);
	if (err) {
		pmc_follow_forget(&pm->follow, g->ro, SEG_BYTES);
		goto unmap;
	}
	g->next = pm->all_segs;
	pm->all_segs = g;
	/* A reused index replaces an older segment's entry; the old one
	 * stays mapped (and on all_segs) for mappings that still use it. */
	__atomic_store_n(&chunk[index & (DIR_SIZE - 1)], g, __ATOMIC_RELEASE);
	return 0;
unmap:
	view_release(pm, want_ro ? want_ro : g->ro);
	view_release(pm, want_rw ? want_rw : g->rw);
	free(g);
close_fd:
	close(fd);
	return err;
}

/* The view mapped for handle h, or NULL. Lock-free. */
static struct pmc_view *hview_get(struct pm *pm, container_t h)
{
	uint64_t index = (h & UINT32_MAX) - 1;
	struct pmc_hview *chunk, *e;

	if (index >= DIR_MAX)
		return NULL;
	chunk = __atomic_load_n(&pm->hdir[index >> DIR_BITS], __ATOMIC_ACQUIRE);
	if (!chunk)
		return NULL;
	e = &chunk[index & (DIR_SIZE - 1)];
	if (__atomic_load_n(&e->handle, __ATOMIC_ACQUIRE) != h)
		return NULL;
	return __atomic_load_n(&e->view, __ATOMIC_ACQUIRE);
}

/* Records v as h's view (NULL: forget). Must hold pm->lock. */
static void hview_set(struct pm *pm, container_t h, struct pmc_view *v)
{
	uint64_t index = (h & UINT32_MAX) - 1;
	struct pmc_hview *chunk;

	if (index >= DIR_MAX)
		return;
	chunk = pm->hdir[index >> DIR_BITS];
	if (!chunk) {
		if (!v)
			return;
		chunk = calloc(DIR_SIZE, sizeof(*chunk));
		if (!chunk)
			return; /* the fast path just stays off for h */
		__atomic_store_n(&pm->hdir[index >> DIR_BITS], chunk,
				 __ATOMIC_RELEASE);
	}
	/* Readers check the handle after reading it, then the view: clear
	 * the handle first, set it last. */
	__atomic_store_n(&chunk[index & (DIR_SIZE - 1)].handle, 0,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&chunk[index & (DIR_SIZE - 1)].view, v,
			 __ATOMIC_RELEASE);
	if (v)
		__atomic_store_n(&chunk[index & (DIR_SIZE - 1)].handle, h,
				 __ATOMIC_RELEASE);
}

/* The view with this id among those we hold, mapping fd (>= 0) if new.
 * Must hold pm->lock. */
static struct pmc_view *view_add(struct pm *pm, uint64_t id, int fd)
{
	struct pmc_view *v;
	struct stat st;

	for (v = pm->all_views; v; v = v->next)
		if (v->id == id)
			break;
	if (v || fd < 0) {
		if (fd >= 0)
			close(fd);
		return v;
	}
	v = calloc(1, sizeof(*v));
	if (!v || fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(*v->hdr))
		goto fail;
	v->bytes = (size_t)st.st_size;
	v->hdr = mmap(NULL, v->bytes, PROT_READ, MAP_SHARED, fd, 0);
	if (v->hdr == MAP_FAILED)
		goto fail;
	close(fd);
	if (v->hdr->magic != PM_VIEW_MAGIC || v->hdr->id != id ||
	    !v->hdr->nbuckets || (v->hdr->nbuckets & (v->hdr->nbuckets - 1)) ||
	    sizeof(*v->hdr) + (size_t)v->hdr->nbuckets *
	    sizeof(struct pm_view_entry) > v->bytes) {
		munmap((void *)v->hdr, v->bytes);
		free(v);
		return NULL;
	}
	v->id = id;
	v->next = pm->all_views;
	pm->all_views = v;
	return v;
fail:
	free(v);
	close(fd);
	return NULL;
}

/*
 * Looks frame f up in view v (seqlock reader: copy, then check that the
 * pmd wrote nothing meanwhile). False when the frame is not there, the
 * view is dead or locked against us, or the pmd kept writing: the caller
 * asks the pmd.
 */
static bool view_lookup(const struct pmc_view *v, pm_task_t self, frame_t f,
			struct pm_view_entry *out)
{
	const struct pm_view_hdr *h = v->hdr;
	const struct pm_view_entry *e = (const struct pm_view_entry *)(h + 1);
	uint32_t mask = h->nbuckets - 1;

	for (int tries = 0; tries < 16; tries++) {
		uint64_t s1 = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
		bool found = false;
		uint64_t locker;

		if (s1 & 1)
			continue;
		if (__atomic_load_n(&h->state, __ATOMIC_RELAXED) != PM_VIEW_LIVE)
			return false;
		locker = __atomic_load_n(&h->locker, __ATOMIC_RELAXED);
		uint32_t i = pm_view_hash(f, mask + 1);
		for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
			uint16_t flags = __atomic_load_n(&e[i].flags, __ATOMIC_RELAXED);
			if (!(flags & PM_VIEW_USED))
				break;
			if (__atomic_load_n(&e[i].frame, __ATOMIC_RELAXED) != f)
				continue;
			out->frame = f;
			out->segment = __atomic_load_n(&e[i].segment, __ATOMIC_RELAXED);
			out->slot = __atomic_load_n(&e[i].slot, __ATOMIC_RELAXED);
			out->gen = __atomic_load_n(&e[i].gen, __ATOMIC_RELAXED);
			out->flags = flags;
			found = true;
			break;
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&h->seq, __ATOMIC_RELAXED) == s1)
			return found && (!locker || locker == self);
	}
	return false;
}

/*
 * Notes that the segment's addresses of slots slot.. now stand for frames
 * start.. of c, so that a fault there can be resolved from the view. The
 * common case (already noted) takes no lock.
 */
static bool rev_note(struct pm *pm, struct pmc_seg *g, uint16_t slot,
		     container_t c, frame_t start, int n)
{
	struct pmc_rev *rev = __atomic_load_n(&g->rev, __ATOMIC_ACQUIRE);
	bool same = rev != NULL;

	for (int i = 0; same && i < n; i++)
		same = __atomic_load_n(&rev[slot + i].cont, __ATOMIC_RELAXED) == c &&
		       __atomic_load_n(&rev[slot + i].frame, __ATOMIC_RELAXED) ==
			       start + (frame_t)i;
	if (same)
		return true;
	pthread_mutex_lock(&pm->follow.lock);
	if (!g->rev)
		__atomic_store_n(&g->rev, calloc(PM_SEGMENT_SLOTS, sizeof(*g->rev)),
				 __ATOMIC_RELEASE);
	rev = g->rev;
	for (int i = 0; rev && i < n; i++) {
		__atomic_store_n(&rev[slot + i].cont, c, __ATOMIC_RELAXED);
		__atomic_store_n(&rev[slot + i].frame, start + (frame_t)i,
				 __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&pm->follow.lock);
	return rev != NULL;
}

/* pmc_local_fn: the current place of a frame, from the session's view. */
static bool local_place(void *arg, uint64_t seg, uint32_t slot, container_t c,
			frame_t f, struct pmc_place *out)
{
	struct pm *pm = arg;
	struct pm_view_entry e;
	struct pmc_view *v;
	struct pmc_seg *g;

	if (!c) {
		g = seg_get(pm, seg);
		if (!g || slot >= PM_SEGMENT_SLOTS)
			return false;
		pthread_mutex_lock(&pm->follow.lock);
		if (g->rev) {
			c = g->rev[slot].cont;
			f = g->rev[slot].frame;
		}
		pthread_mutex_unlock(&pm->follow.lock);
		if (!c)
			return false;
	}
	v = hview_get(pm, c);
	if (!v || !view_lookup(v, pm->task, f, &e) ||
	    (e.segment == seg && e.slot == slot))
		return false; /* the pmd knows better */
	g = seg_get(pm, e.segment);
	*out = (struct pmc_place){ .cont = c, .frame = f, .seg = e.segment,
				   .slot = e.slot, .cow = e.flags & PM_VIEW_COW,
				   .fd = g ? g->fd : -1 };
	return true;
}

/*
 * The fast path: maps frames start.. from the view and the segments we
 * hold, without a message. False (nothing done) whenever any frame needs
 * the pmd: not in the view, in a segment we do not hold, copy-on-write
 * under FORCE_WRITE, a lock, a dead view.
 */
static bool map_fast(struct pm *pm, container_t c, frame_t start, int n,
		     int flags, void **addr, int *granted)
{
	struct pm_view_entry ents[16];
	struct pmc_view *v = hview_get(pm, c);
	bool want_write = flags & CONT_MAP_WRITE;
	bool force = want_write && (flags & CONT_MAP_FORCE_WRITE);
	bool writable = want_write, one_run = true;
	struct pmc_seg *g0 = NULL;

	if (!v || n > (int)(sizeof(ents) / sizeof(ents[0])) ||
	    !(flags & (CONT_MAP_READ | CONT_MAP_WRITE)) ||
	    (flags & ~(CONT_MAP_READ | CONT_MAP_WRITE | CONT_MAP_FORCE_WRITE)))
		return false;
	for (int i = 0; i < n; i++) {
		struct pmc_seg *g;

		if (!view_lookup(v, pm->task, start + (frame_t)i, &ents[i]))
			return false;
		g = seg_get(pm, ents[i].segment);
		if (!g)
			return false;
		if (ents[i].flags & PM_VIEW_COW) {
			if (force)
				return false; /* the pmd makes the copy */
			writable = false;
		}
		if (i == 0)
			g0 = g;
		else if (g != g0 || ents[i].slot != ents[0].slot + i)
			one_run = false;
	}
	if (one_run) {
		uint8_t *base = writable ? g0->rw : g0->ro;
		if (pmc_follow_on(&pm->follow) &&
		    !rev_note(pm, g0, ents[0].slot, c, start, n))
			return false;
		*addr = base + (size_t)ents[0].slot * PM_FRAME_SIZE;
	} else {
		/* Scattered frames: one mmap per run of consecutive slots of
		 * one segment, into a reserved range (still no message). */
		size_t size = (size_t)n * PM_FRAME_SIZE;
		int prot = PROT_READ | (writable ? PROT_WRITE : 0);
		uint8_t *region = mmap(NULL, size, PROT_NONE, MAP_PRIVATE |
				       MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (region == MAP_FAILED)
			return false;
		for (int i = 0, run; i < n; i += run) {
			struct pmc_seg *g = seg_get(pm, ents[i].segment);
			uint8_t *at = region + (size_t)i * PM_FRAME_SIZE;

			for (run = 1; i + run < n &&
			     ents[i + run].segment == ents[i].segment &&
			     ents[i + run].slot == ents[i].slot + run; run++)
				;
			if (mmap(at, (size_t)run * PM_FRAME_SIZE, prot,
				 MAP_SHARED | MAP_FIXED, g->fd,
				 (off_t)ents[i].slot * PM_FRAME_SIZE) == MAP_FAILED ||
			    pmc_follow_add(&pm->follow, at,
					   (size_t)run * PM_FRAME_SIZE,
					   ents[i].segment, ents[i].slot, prot,
					   c, start + (frame_t)i)) {
				pmc_follow_forget(&pm->follow, region, size);
				munmap(region, size);
				return false;
			}
		}
		*addr = region;
	}
	if (granted)
		*granted = CONT_MAP_READ | (writable ? CONT_MAP_WRITE : 0);
	return true;
}

/* Whether addr lies in the whole-segment views (maps of the fast path,
 * released with the session, not by unmap). */
static bool in_segment_view(struct pm *pm, const uint8_t *addr)
{
	uint8_t *base = __atomic_load_n(&pm->vbase, __ATOMIC_ACQUIRE);
	bool hit = false;

	if (base && addr >= base && addr < base + VIEW_SPAN)
		return true;
	if (!__atomic_load_n(&pm->views_outside, __ATOMIC_ACQUIRE))
		return false;
	pthread_mutex_lock(&pm->lock);
	for (struct pmc_seg *g = pm->all_segs; g && !hit; g = g->next)
		hit = (addr >= g->ro && addr < g->ro + SEG_BYTES) ||
		      (addr >= g->rw && addr < g->rw + SEG_BYTES);
	pthread_mutex_unlock(&pm->lock);
	return hit;
}

/* Maps frames start.. into region: one MAP exchange; *done frames mapped.
 * Must hold pm->lock. */
static error_t map_chunk(struct pm *pm, container_t c, frame_t start,
			 uint32_t count, int flags, uint8_t *region,
			 uint32_t *done, uint32_t *granted)
{
	struct pm_map_req req = { .handle = c, .start = start, .count = count,
				  .flags = (uint32_t)flags };
	int fds[PM_MAP_FDS_MAX + 1];
	struct rpc r = { .type = PM_MSG_MAP, .req = &req, .req_len = sizeof(req),
			 .body = pm->tx, .body_max = sizeof(pm->tx),
			 .fds = fds, .fds_max = PM_MAP_FDS_MAX + 1 };
	const struct pm_map_rep *rep = (const struct pm_map_rep *)pm->tx;
	const struct pm_map_run *runs;
	const uint8_t *ids;
	uint64_t covered = 0;
	error_t err;

	/* The reply body lands in tx, free once the request is sent. */
	static_assert(sizeof(((struct pm *)0)->tx) >= PM_MSG_MAX, "tx size");
	err = rpc_call(pm, &r);
	if (err)
		return err;
	if (r.body_len < sizeof(*rep) || rep->nruns > PM_MAP_MAX ||
	    rep->nsegs > PM_MAP_FDS_MAX ||
	    r.body_len != sizeof(*rep) + rep->nruns * sizeof(struct pm_map_run) +
				  rep->nsegs * sizeof(uint64_t) ||
	    rep->view_fd > 1 || r.nfds != rep->nsegs + rep->view_fd ||
	    rep->done == 0 || rep->done > count)
		goto proto;
	runs = (const struct pm_map_run *)(rep + 1);
	ids = (const uint8_t *)(runs + rep->nruns);
	if (rep->view) {
		struct pmc_view *v = view_add(pm, rep->view,
					      rep->view_fd ? fds[rep->nsegs] : -1);
		if (rep->view_fd)
			fds[rep->nsegs] = -1;
		hview_set(pm, c, v);
	}
	for (uint32_t i = 0; i < rep->nsegs; i++) {
		uint64_t id;
		memcpy(&id, ids + i * sizeof(id), sizeof(id));
		err = seg_add(pm, id, fds[i]);
		fds[i] = -1;
		if (err) {
			for (uint32_t k = i + 1; k < r.nfds; k++)
				if (fds[k] >= 0)
					close(fds[k]);
			return err;
		}
	}
	for (uint32_t i = 0; i < rep->nruns; i++) {
		const struct pm_map_run *run = &runs[i];
		struct pmc_seg *g = seg_get(pm, run->segment);
		int prot = PROT_READ;
		int fd;

		if (!g) {
			/* The fault thread may have it: a moved frame's
			 * new segment comes to it, not to this session. */
			fd = pmc_follow_seg_dup(&pm->follow, run->segment);
			if (fd >= 0 && !seg_add(pm, run->segment, fd))
				g = seg_get(pm, run->segment);
		}
		fd = g ? g->fd : -1;

		if (fd < 0 || run->nframes == 0 ||
		    covered + run->nframes > rep->done)
			goto proto;
		if (run->prot & CONT_MAP_WRITE)
			prot |= PROT_WRITE;
		if (mmap(region + covered * PM_FRAME_SIZE,
			 (size_t)run->nframes * PM_FRAME_SIZE, prot,
			 MAP_SHARED | MAP_FIXED, fd,
			 (off_t)run->slot * PM_FRAME_SIZE) == MAP_FAILED)
			return errno;
		err = pmc_follow_add(&pm->follow, region + covered * PM_FRAME_SIZE,
				     (size_t)run->nframes * PM_FRAME_SIZE,
				     run->segment, run->slot, prot, c,
				     start + covered);
		if (err)
			return err;
		covered += run->nframes;
	}
	if (covered != rep->done)
		goto proto;
	*done = rep->done;
	*granted &= rep->granted;
	return 0;
proto:
	for (uint32_t i = 0; i < r.nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	pm->broken = true;
	return EPROTO;
}

error_t pm_container_map(pm_t *pm, container_t container, frame_t start,
			 int nr_frames, int flags, void **addr, int *granted)
{
	uint32_t got = CONT_MAP_READ | CONT_MAP_WRITE | CONT_MAP_FORCE_WRITE;
	uint64_t mapped = 0;
	size_t size;
	uint8_t *region;
	error_t err = 0;

	if (!pm || !addr || nr_frames <= 0)
		return EINVAL;
	if (start > UINT64_MAX - (uint64_t)(nr_frames - 1))
		return EINVAL;
	if (pm->fastpath &&
	    map_fast(pm, container, start, nr_frames, flags, addr, granted))
		return 0;
	size = (size_t)nr_frames * PM_FRAME_SIZE;
	region = mmap(NULL, size, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (region == MAP_FAILED)
		return errno;

	pthread_mutex_lock(&pm->lock);
	while (mapped < (uint64_t)nr_frames) {
		uint64_t left = (uint64_t)nr_frames - mapped;
		uint32_t chunk = left > pm->map_max ? pm->map_max : (uint32_t)left;
		uint32_t done = 0;

		err = map_chunk(pm, container, start + mapped, chunk, flags,
				region + mapped * PM_FRAME_SIZE, &done, &got);
		if (err)
			break;
		mapped += done;
	}
	pthread_mutex_unlock(&pm->lock);
	if (err) {
		pmc_follow_forget(&pm->follow, region, size);
		munmap(region, size);
		return err;
	}
	got &= CONT_MAP_READ | CONT_MAP_WRITE;
	if (!(flags & CONT_MAP_WRITE))
		got &= ~(uint32_t)CONT_MAP_WRITE;
	*addr = region;
	if (granted)
		*granted = (int)got;
	return 0;
}

error_t pm_container_unmap(pm_t *pm, void *addr, int nr_frames)
{
	if (!pm || !addr || nr_frames <= 0 ||
	    (uintptr_t)addr % PM_FRAME_SIZE)
		return EINVAL;
	if (in_segment_view(pm, addr))
		return 0;
	pmc_follow_forget(&pm->follow, addr, (size_t)nr_frames * PM_FRAME_SIZE);
	if (munmap(addr, (size_t)nr_frames * PM_FRAME_SIZE) < 0)
		return errno;
	return 0;
}

/* Splits a transfer into io_max pieces; offsets count from `frame`. */
error_t pm_container_read(pm_t *pm, container_t container, frame_t frame,
			  size_t offset, void *buf, size_t len)
{
	uint8_t *p = buf;

	if (!pm || (!buf && len))
		return EINVAL;
	if (len == 0)
		return 0;
	if (offset > UINT64_MAX - len)
		return EINVAL;
	while (len) {
		uint32_t n = len > pm->io_max ? pm->io_max : (uint32_t)len;
		struct pm_io_req req = { .handle = container, .frame = frame,
					 .offset = offset, .len = n,
					 .flags = pm->win ? PM_IO_WINDOW : 0 };
		struct rpc r = { .type = PM_MSG_READ, .req = &req,
				 .req_len = sizeof(req), .body = p,
				 .body_max = n };
		error_t err;

		pthread_mutex_lock(&pm->lock);
		err = rpc_call(pm, &r);
		/* In the reply, or (no body) in the window. */
		if (!err && r.body_len == 0 && pm->win)
			memcpy(p, pm->win, n);
		else if (!err && r.body_len != n) {
			pm->broken = true;
			err = EPROTO;
		}
		pthread_mutex_unlock(&pm->lock);
		if (err)
			return err;
		p += n;
		offset += n;
		len -= n;
	}
	return 0;
}

error_t pm_container_write(pm_t *pm, container_t container, frame_t frame,
			   size_t offset, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	if (!pm || (!buf && len))
		return EINVAL;
	if (len == 0)
		return 0;
	if (offset > UINT64_MAX - len)
		return EINVAL;
	while (len) {
		uint32_t n = len > pm->io_max ? pm->io_max : (uint32_t)len;
		struct pm_io_req req = { .handle = container, .frame = frame,
					 .offset = offset, .len = n };
		struct rpc r = { .type = PM_MSG_WRITE, .req = &req,
				 .req_len = sizeof(req), .data = p,
				 .data_len = n };
		error_t err;

		pthread_mutex_lock(&pm->lock);
		if (pm->win) { /* the bytes go through the window */
			memcpy(pm->win, p, n);
			req.flags = PM_IO_WINDOW;
			r.data = NULL;
			r.data_len = 0;
		}
		err = rpc_call(pm, &r);
		pthread_mutex_unlock(&pm->lock);
		if (err)
			return err;
		p += n;
		offset += n;
		len -= n;
	}
	return 0;
}

/* One frame's bytes from src to dst: ENOENT (src missing) or ENOMEM
 * (dst missing) name the frame as a copy does. */
static error_t copy_frame(pm_t *pm, container_t src, frame_t sf,
			  container_t dst, frame_t df, uint8_t *buf,
			  frame_t *frame_error)
{
	error_t err = pm_container_read(pm, src, sf, 0, buf, PM_FRAME_SIZE);

	if (err) {
		if (err == ENOENT && frame_error)
			*frame_error = sf;
		return err;
	}
	err = pm_container_write(pm, dst, df, 0, buf, PM_FRAME_SIZE);
	if (err == ENOENT) {
		if (frame_error)
			*frame_error = df;
		return ENOMEM;
	}
	return err;
}

/*
 * A copy between containers of different homes (the pmd answered EXDEV):
 * no frame can be shared across nodes, so the bytes are copied, in
 * pieces of PM_IO_MAX in frame order. A piece that fails is done again
 * frame by frame, so that the error is the one of the first frame that
 * stops it and the frames before it are copied, as for any copy. The
 * containers differ, so the ranges cannot overlap.
 */
static error_t copy_bytes(pm_t *pm, container_t src, frame_t src_start,
			  container_t dst, frame_t dst_start, uint32_t count,
			  frame_t *frame_error)
{
	const uint32_t per = PM_IO_MAX / PM_FRAME_SIZE;
	uint8_t *buf = malloc(PM_IO_MAX);
	error_t err = 0;

	if (!buf)
		return ENOMEM;
	for (uint32_t k = 0; k < count && !err; k += per) {
		uint32_t n = count - k < per ? count - k : per;
		size_t len = (size_t)n * PM_FRAME_SIZE;

		if (!pm_container_read(pm, src, src_start + k, 0, buf, len) &&
		    !pm_container_write(pm, dst, dst_start + k, 0, buf, len))
			continue;
		for (uint32_t j = 0; j < n && !err; j++)
			err = copy_frame(pm, src, src_start + k + j, dst,
					 dst_start + k + j, buf, frame_error);
	}
	free(buf);
	return err;
}

error_t pm_container_copy(pm_t *pm, container_t src, frame_t src_start,
			  container_t dst, frame_t dst_start, int count,
			  int flags, frame_t *frame_error)
{
	struct pm_copy_req req = { .src = src, .src_start = src_start,
				   .dst = dst, .dst_start = dst_start,
				   .count = (uint32_t)count,
				   .flags = (uint32_t)flags };
	uint64_t culprit = 0;
	error_t err;

	if (count <= 0)
		return EINVAL;
	err = call(pm, PM_MSG_COPY, &req, sizeof(req), NULL, 0, &culprit);
	if (err == EXDEV)
		return copy_bytes(pm, src, src_start, dst, dst_start,
				  (uint32_t)count, frame_error);
	if ((err == ENOENT || err == ENOMEM) && frame_error)
		*frame_error = culprit;
	return err;
}

error_t pm_container_lock(pm_t *pm, container_t container, unsigned int msec)
{
	struct pm_lock_req req = { .handle = container, .msec = msec };

	return call(pm, PM_MSG_LOCK, &req, sizeof(req), NULL, 0, NULL);
}

error_t pm_container_unlock(pm_t *pm, container_t container)
{
	return call_handle(pm, PM_MSG_UNLOCK, container);
}

error_t pm_set_reclaim_handler(pm_t *pm, pm_reclaim_fn fn, void *arg)
{
	if (!pm)
		return EINVAL;
	pthread_mutex_lock(&pm->lock);
	pm->reclaim_fn = fn;
	pm->reclaim_arg = arg;
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

error_t pm_nodes(pm_t *pm, struct pm_node_info *nodes, int *count)
{
	uint8_t buf[sizeof(struct pm_nodes_rep) +
		    PM_NODES_MAX * sizeof(struct pm_node_entry)];
	const struct pm_nodes_rep *rep = (const void *)buf;
	const struct pm_node_entry *e = (const void *)(rep + 1);
	struct rpc r = { .type = PM_MSG_NODES, .body = buf,
			 .body_max = sizeof(buf) };
	error_t err;

	if (!pm || !count || *count < 0 || (*count && !nodes))
		return EINVAL;
	pthread_mutex_lock(&pm->lock);
	err = rpc_call(pm, &r);
	if (!err && (r.body_len < sizeof(*rep) || rep->count > PM_NODES_MAX ||
		     r.body_len != sizeof(*rep) + rep->count * sizeof(*e))) {
		pm->broken = true;
		err = EPROTO;
	}
	pthread_mutex_unlock(&pm->lock);
	if (err)
		return err;
	for (uint32_t i = 0; i < rep->count && i < (uint32_t)*count; i++) {
		memset(&nodes[i], 0, sizeof(nodes[i]));
		nodes[i].id = e[i].id;
		nodes[i].state = (int)e[i].state;
		nodes[i].frames_total = e[i].frames_total;
		nodes[i].frames_free = e[i].frames_free;
		nodes[i].incarnation = e[i].incarnation;
		memcpy(nodes[i].address, e[i].address, sizeof(nodes[i].address));
		nodes[i].address[sizeof(nodes[i].address) - 1] = 0;
	}
	*count = (int)rep->count;
	return 0;
}

error_t pm_debug_stat(pm_t *pm, struct pm_debug_stat *st)
{
	struct pm_debug_rep rep;
	error_t err;

	if (!st)
		return EINVAL;
	err = call(pm, PM_MSG_DEBUG_STAT, NULL, 0, &rep, sizeof(rep), NULL);
	if (err)
		return err;
	memset(st, 0, sizeof(*st));
	st->tasks = rep.tasks;
	st->containers = rep.containers;
	st->frames = rep.frames;
	st->charged = rep.charged;
	st->slots_used = rep.slots_used;
	st->segments = rep.segments;
	st->frames_total = rep.frames_total;
	st->frames_free = rep.frames_free;
	st->invariant_ok = rep.invariant_ok;
	st->requests = rep.requests;
	return 0;
}

error_t pm_debug_move(pm_t *pm, container_t container, frame_t frame)
{
	struct pm_move_req req = { .handle = container, .frame = frame };

	return call(pm, PM_MSG_MOVE, &req, sizeof(req), NULL, 0, NULL);
}

int pm_debug_follows(pm_t *pm)
{
	return pm && pmc_follow_on(&pm->follow);
}

error_t pm_debug_ping(pm_t *pm, pm_node_t node, uint64_t *rtt_ns)
{
	struct pm_ping_req req = { .node = node };
	struct pm_ping_rep rep;
	error_t err = call(pm, PM_MSG_PING_NODE, &req, sizeof(req), &rep,
			   sizeof(rep), NULL);

	if (!err && rtt_ns)
		*rtt_ns = rep.rtt_ns;
	return err;
}
