/*
 * client.c - libpmclient: a task's session with its local pmd.
 *
 * One pm_t is one SEQPACKET connection. Calls are thread-safe: a mutex
 * keeps one request in flight per session and guards the table of segment
 * descriptors the pmd has passed for mappings. Replies are checked as
 * strictly as the pmd checks requests: a reply that breaks the wire format
 * is EPROTO, and a pmd that went away is ECONNRESET for every later call.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <pm/pm.h>

#include "pm_proto.h"

struct seg_fd {
	uint64_t id;  /* segment id from the pmd */
	int fd;       /* our descriptor of its memfd */
};

struct pm {
	int fd;                        /* (C) the connection */
	pthread_mutex_t lock;          /* guards everything below */
	uint32_t seq;                  /* last request's sequence number */
	bool broken;                   /* the connection failed: ECONNRESET */
	pm_task_t task;                /* (C) after HELLO */
	pm_node_t node;                /* (C) */
	uint32_t io_max, map_max;      /* (C) */
	struct seg_fd *segs;           /* segments we hold, sorted by id */
	uint32_t nsegs, segs_cap;
	pm_reclaim_fn reclaim_fn;      /* extra-frame upcall */
	void *reclaim_arg;
	uint8_t tx[PM_MSG_MAX] __attribute__((aligned(16)));
	uint8_t rx[PM_MSG_MAX + 1] __attribute__((aligned(16)));
};

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
	pm->io_max = rep.io_max;
	pm->map_max = rep.map_max;
	*pm_out = pm;
	return 0;

close_fd:
	close(pm->fd);
free_pm:
	pthread_mutex_destroy(&pm->lock);
	free(pm);
	return err;
}

void pm_disconnect(pm_t *pm)
{
	if (!pm)
		return;
	close(pm->fd);
	for (uint32_t i = 0; i < pm->nsegs; i++)
		close(pm->segs[i].fd);
	free(pm->segs);
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
	return call_handle(pm, PM_MSG_DESTROY, container);
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
	return call_handle(pm, PM_MSG_RELEASE, ref);
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

/* The descriptor of segment id, or -1. Must hold pm->lock. */
static int seg_find(const struct pm *pm, uint64_t id)
{
	uint32_t lo = 0, hi = pm->nsegs;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (pm->segs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < pm->nsegs && pm->segs[lo].id == id ? pm->segs[lo].fd : -1;
}

/* Keeps fd as segment id's descriptor (closing fd if we had one).
 * Must hold pm->lock. */
static error_t seg_add(struct pm *pm, uint64_t id, int fd)
{
	uint32_t i = 0;

	if (seg_find(pm, id) >= 0) {
		close(fd);
		return 0;
	}
	if (pm->nsegs == pm->segs_cap) {
		uint32_t ncap = pm->segs_cap ? pm->segs_cap * 2 : 16;
		struct seg_fd *v = realloc(pm->segs, ncap * sizeof(*v));
		if (!v) {
			close(fd);
			return ENOMEM;
		}
		pm->segs = v;
		pm->segs_cap = ncap;
	}
	while (i < pm->nsegs && pm->segs[i].id < id)
		i++;
	memmove(&pm->segs[i + 1], &pm->segs[i],
		(pm->nsegs - i) * sizeof(pm->segs[0]));
	pm->segs[i].id = id;
	pm->segs[i].fd = fd;
	pm->nsegs++;
	return 0;
}

/* Maps frames start.. into region: one MAP exchange; *done frames mapped.
 * Must hold pm->lock. */
static error_t map_chunk(struct pm *pm, container_t c, frame_t start,
			 uint32_t count, int flags, uint8_t *region,
			 uint32_t *done, uint32_t *granted)
{
	struct pm_map_req req = { .handle = c, .start = start, .count = count,
				  .flags = (uint32_t)flags };
	int fds[PM_MAP_FDS_MAX];
	struct rpc r = { .type = PM_MSG_MAP, .req = &req, .req_len = sizeof(req),
			 .body = pm->tx, .body_max = sizeof(pm->tx),
			 .fds = fds, .fds_max = PM_MAP_FDS_MAX };
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
	    r.nfds != rep->nsegs || rep->done == 0 || rep->done > count)
		goto proto;
	runs = (const struct pm_map_run *)(rep + 1);
	ids = (const uint8_t *)(runs + rep->nruns);
	for (uint32_t i = 0; i < rep->nsegs; i++) {
		uint64_t id;
		memcpy(&id, ids + i * sizeof(id), sizeof(id));
		err = seg_add(pm, id, fds[i]);
		fds[i] = -1;
		if (err) {
			for (uint32_t k = i + 1; k < rep->nsegs; k++)
				close(fds[k]);
			return err;
		}
	}
	for (uint32_t i = 0; i < rep->nruns; i++) {
		const struct pm_map_run *run = &runs[i];
		int fd = seg_find(pm, run->segment);
		int prot = PROT_READ;

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
					 .offset = offset, .len = n };
		struct rpc r = { .type = PM_MSG_READ, .req = &req,
				 .req_len = sizeof(req), .body = p,
				 .body_max = n };
		error_t err;

		pthread_mutex_lock(&pm->lock);
		err = rpc_call(pm, &r);
		if (!err && r.body_len != n) {
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
	return 0;
}
