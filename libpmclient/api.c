/*
 * api.c - the calls of pm.h that are one request each (or a loop of
 * them): tasks, containers, frames, reads, writes and copies, sharing,
 * locks, the cluster, and the debug calls.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

error_t pm_task_stat(pm_t *pm, struct pm_task_stat *st)
{
	struct pm_task_stat_rep rep;
	error_t err;

	if (!st)
		return EINVAL;
	err = pmc_call(pm, PM_MSG_TASK_STAT, NULL, 0, &rep, sizeof(rep), NULL);
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
	err = pmc_call(pm, PM_MSG_CREATE, NULL, 0, &rep, sizeof(rep), NULL);
	if (!err)
		*container = rep.handle;
	return err;
}

error_t pm_container_destroy(pm_t *pm, container_t container)
{
	error_t err = pmc_call_handle(pm, PM_MSG_DESTROY, container);

	if (!err) {
		pthread_mutex_lock(&pm->lock);
		pmc_hview_set(pm, container, NULL);
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
	err = pmc_call(pm, PM_MSG_STAT, &req, sizeof(req), &rep, sizeof(rep), NULL);
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
	return pmc_call(pm, PM_MSG_SET_POLICY, &req, sizeof(req), NULL, 0, NULL);
}

error_t pm_container_share(pm_t *pm, container_t container, pm_task_t remote,
			   container_t *weak_ref)
{
	struct pm_share_req req = { .handle = container, .task = remote };
	struct pm_handle_rep rep;
	error_t err;

	if (!weak_ref)
		return EINVAL;
	err = pmc_call(pm, PM_MSG_SHARE, &req, sizeof(req), &rep, sizeof(rep), NULL);
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
	err = pmc_call(pm, PM_MSG_EXPORT, &req, sizeof(req), &rep, sizeof(rep), NULL);
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
	err = pmc_call(pm, PM_MSG_IMPORT, &req, sizeof(req), &rep, sizeof(rep), NULL);
	if (!err)
		*ref = rep.handle;
	return err;
}

error_t pm_container_unshare(pm_t *pm, container_t container, pm_task_t remote)
{
	struct pm_share_req req = { .handle = container, .task = remote };

	return pmc_call(pm, PM_MSG_UNSHARE, &req, sizeof(req), NULL, 0, NULL);
}

error_t pm_cap_release(pm_t *pm, container_t ref)
{
	error_t err = pmc_call_handle(pm, PM_MSG_RELEASE, ref);

	if (!err) {
		pthread_mutex_lock(&pm->lock);
		pmc_hview_set(pm, ref, NULL);
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
	struct pmc_rpc r = { .type = PM_MSG_ALLOCATE, .req = &req,
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
	err = pmc_request(pm, &r);
	if (r.body_len == sizeof(rep)) {
		*count = (int)rep.count; /* written on error too */
	} else {
		*count = 0;
		if (!err || err != ECONNRESET) {
			__atomic_store_n(&pm->broken, true, __ATOMIC_RELAXED);
			err = err == ECONNRESET ? err : EPROTO;
		}
	}
	return err;
}

error_t pm_container_deallocate(pm_t *pm, container_t container, frame_t start,
				int count)
{
	struct pm_dealloc_req req = { .handle = container, .start = start,
				      .count = (uint32_t)count };

	if (count <= 0)
		return EINVAL;
	return pmc_call(pm, PM_MSG_DEALLOCATE, &req, sizeof(req), NULL, 0, NULL);
}

/* The pmd retired the window a request named (PM_ST_WINDOW_GONE, after
 * an RDMA through it failed): nothing was done. It goes; the request is
 * sent again with its bytes in the messages, and later ones use a new
 * window (*renew). Whether to send it again (pm->lock held). */
static bool window_gone(struct pm *pm, uint32_t flags, bool *renew)
{
	if (!(flags & PM_IO_WINDOW))
		return false;
	pmc_window_drop(pm);
	*renew = true;
	return true;
}

/* One piece of a read or a write (up to io_max bytes at p) through the
 * ring, with its slot's window: PMC_USE_SOCKET when there is no free
 * slot or the pmd wants it on the socket. A slot whose window the pmd
 * retired (EBADFD) is not used again. */
static error_t io_ring(struct pm *pm, bool write, struct pm_io_req *req,
		       uint8_t *p)
{
	struct pmc_rpc r = { .type = write ? PM_MSG_WRITE : PM_MSG_READ,
			     .req = req, .req_len = sizeof(*req) };
	uint32_t n = req->len;
	error_t err;
	int i = pmc_ring_get(pm);

	if (i < 0)
		return PMC_USE_SOCKET;
	/* (The bytes go through the slot's window: replies carry none.) */
	req->flags = PM_IO_WINDOW;
	if (write)
		memcpy(pm->ring.win[i], p, n);
	err = pmc_ring_rpc(pm, i, &r);
	if (err == EBADFD)
		return PMC_USE_SOCKET; /* (the slot stays taken) */
	if (!err && !write)
		memcpy(p, pm->ring.win[i], n);
	pmc_ring_put(pm, i);
	return err;
}

/* The same on the socket, through the session's window when it has
 * one, else with the bytes in the messages. */
static error_t io_socket(struct pm *pm, bool write, struct pm_io_req *req,
			 uint8_t *p)
{
	uint32_t n = req->len;
	struct pmc_rpc r;
	bool renew = false;
	error_t err;

	pthread_mutex_lock(&pm->lock);
	do {
		r = (struct pmc_rpc){ .type = write ? PM_MSG_WRITE
						    : PM_MSG_READ,
				      .req = req, .req_len = sizeof(*req) };
		req->flags = pm->win ? PM_IO_WINDOW : 0;
		if (write && pm->win) /* the bytes go through the window */
			memcpy(pm->win, p, n);
		else if (write) {
			r.data = p;
			r.data_len = n;
		} else {
			r.body = p;
			r.body_max = n;
		}
		err = pmc_rpc(pm, &r);
	} while (err == EBADFD && window_gone(pm, req->flags, &renew));
	/* A read's bytes: in the reply, or (no body) in the window. */
	if (!err && !write && r.body_len == 0 && req->flags)
		memcpy(p, pm->win, n);
	else if (!err && r.body_len != (write ? 0 : n)) {
		__atomic_store_n(&pm->broken, true, __ATOMIC_RELAXED);
		err = EPROTO;
	}
	if (renew)
		pmc_window_open(pm);
	pthread_mutex_unlock(&pm->lock);
	return err;
}

/* Splits a transfer into io_max pieces; offsets count from `frame`. */
static error_t io_split(pm_t *pm, bool write, container_t container,
			frame_t frame, size_t offset, uint8_t *p, size_t len)
{
	if (!pm || (!p && len))
		return EINVAL;
	if (len == 0)
		return 0;
	if (offset > UINT64_MAX - len)
		return EINVAL;
	while (len) {
		uint32_t n = len > pm->io_max ? pm->io_max : (uint32_t)len;
		struct pm_io_req req = { .handle = container, .frame = frame,
					 .offset = offset, .len = n };
		error_t err = io_ring(pm, write, &req, p);

		if (err == PMC_USE_SOCKET)
			err = io_socket(pm, write, &req, p);
		if (err)
			return err;
		p += n;
		offset += n;
		len -= n;
	}
	return 0;
}

error_t pm_container_read(pm_t *pm, container_t container, frame_t frame,
			  size_t offset, void *buf, size_t len)
{
	return io_split(pm, false, container, frame, offset, buf, len);
}

error_t pm_container_write(pm_t *pm, container_t container, frame_t frame,
			   size_t offset, const void *buf, size_t len)
{
	/* (A write's bytes are only read from buf.) */
	return io_split(pm, true, container, frame, offset, (uint8_t *)buf,
			len);
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
	/* (Between homes too: the pmd copies the bytes, node to node.) */
	err = pmc_call(pm, PM_MSG_COPY, &req, sizeof(req), NULL, 0, &culprit);
	if ((err == ENOENT || err == ENOMEM) && frame_error)
		*frame_error = culprit;
	return err;
}

error_t pm_container_lock(pm_t *pm, container_t container, unsigned int msec)
{
	struct pm_lock_req req = { .handle = container, .msec = msec };

	return pmc_call(pm, PM_MSG_LOCK, &req, sizeof(req), NULL, 0, NULL);
}

error_t pm_container_unlock(pm_t *pm, container_t container)
{
	return pmc_call_handle(pm, PM_MSG_UNLOCK, container);
}

error_t pm_nodes(pm_t *pm, struct pm_node_info *nodes, int *count)
{
	uint8_t buf[sizeof(struct pm_nodes_rep) +
		    PM_NODES_MAX * sizeof(struct pm_node_entry)];
	const struct pm_nodes_rep *rep = (const void *)buf;
	const struct pm_node_entry *e = (const void *)(rep + 1);
	struct pmc_rpc r = { .type = PM_MSG_NODES, .body = buf,
			     .body_max = sizeof(buf) };
	error_t err;

	if (!pm || !count || *count < 0 || (*count && !nodes))
		return EINVAL;
	pthread_mutex_lock(&pm->lock);
	err = pmc_rpc(pm, &r);
	if (!err && (r.body_len < sizeof(*rep) || rep->count > PM_NODES_MAX ||
		     r.body_len != sizeof(*rep) + rep->count * sizeof(*e))) {
		__atomic_store_n(&pm->broken, true, __ATOMIC_RELAXED);
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
		nodes[i].version = e[i].version;
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
	err = pmc_call(pm, PM_MSG_DEBUG_STAT, NULL, 0, &rep, sizeof(rep), NULL);
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

error_t pm_debug_loans(pm_t *pm, struct pm_debug_loan *loans, int *count,
		       int *ok)
{
	static struct pm_debug_loans_rep zero;
	struct pm_debug_loans_rep *rep;
	error_t err;

	if (!loans || !count || *count < 0 || !ok)
		return EINVAL;
	rep = malloc(sizeof(*rep));
	if (!rep)
		return ENOMEM;
	*rep = zero;
	err = pmc_call(pm, PM_MSG_DEBUG_LOANS, NULL, 0, rep, sizeof(*rep),
		       NULL);
	if (!err && rep->n > PM_NODES_MAX)
		err = EPROTO;
	if (!err) {
		int n = (int)rep->n < *count ? (int)rep->n : *count;
		for (int i = 0; i < n; i++)
			loans[i] = (struct pm_debug_loan){
				.node = rep->e[i].node,
				.lent_to = rep->e[i].lent_to,
				.borrowed_from = rep->e[i].borrowed_from };
		*count = n;
		*ok = rep->ok ? 1 : 0;
	}
	free(rep);
	return err;
}

/* A request whose reply is a body of any length up to a message's. */
static error_t call_long(pm_t *pm, uint16_t type, const void *req,
			 uint32_t req_len, uint8_t **body_out, uint32_t *len_out)
{
	struct pmc_rpc r = { .type = type, .req = req, .req_len = req_len,
			     .body_max = PM_MSG_MAX - PM_REPLY_HDR };
	error_t err;

	r.body = malloc(r.body_max);
	if (!r.body)
		return ENOMEM;
	pthread_mutex_lock(&pm->lock);
	err = pmc_rpc(pm, &r);
	pthread_mutex_unlock(&pm->lock);
	if (err) {
		free(r.body);
		return err;
	}
	*body_out = r.body;
	*len_out = r.body_len;
	return 0;
}

/* A text reply, NUL-terminated in buf. */
static error_t call_text(pm_t *pm, uint16_t type, char *buf, size_t len,
			 size_t *len_out)
{
	uint8_t *body;
	uint32_t blen;
	size_t n;
	error_t err;

	if (!pm || !buf || !len || !len_out)
		return EINVAL;
	err = call_long(pm, type, NULL, 0, &body, &blen);
	if (err)
		return err;
	n = blen < len - 1 ? blen : len - 1;
	memcpy(buf, body, n);
	buf[n] = 0;
	*len_out = n;
	free(body);
	return n < blen ? EMSGSIZE : 0;
}

error_t pm_debug_metrics(pm_t *pm, char *buf, size_t len, size_t *len_out)
{
	return call_text(pm, PM_MSG_METRICS, buf, len, len_out);
}

error_t pm_debug_config(pm_t *pm, char *buf, size_t len, size_t *len_out)
{
	return call_text(pm, PM_MSG_CONFIG, buf, len, len_out);
}

/* A page of a listing: its entries (checked against the body's length). */
static error_t call_list(pm_t *pm, uint16_t type, uint64_t task,
			 uint64_t after, size_t ent_size, uint8_t **body_out,
			 uint32_t *n_out, int *more)
{
	struct pm_list_req req = { .after = after, .task = task };
	struct pm_list_rep rep;
	uint8_t *body;
	uint32_t len;
	error_t err;

	if (!pm || !more)
		return EINVAL;
	err = call_long(pm, type, &req, sizeof(req), &body, &len);
	if (err)
		return err;
	memcpy(&rep, body, len < sizeof(rep) ? len : sizeof(rep));
	if (len < sizeof(rep) || rep.n > PM_LIST_PAGE ||
	    len != sizeof(rep) + rep.n * ent_size) {
		free(body);
		return EPROTO;
	}
	*body_out = body;
	*n_out = rep.n;
	*more = rep.more ? 1 : 0;
	return 0;
}

error_t pm_debug_tasks(pm_t *pm, uint64_t after, struct pm_task_info *tasks,
		       int *count, int *more)
{
	uint8_t *body;
	uint32_t n;
	error_t err;

	if (!tasks || !count || *count < 0)
		return EINVAL;
	err = call_list(pm, PM_MSG_TASKS, 0, after, sizeof(struct pm_task_ent),
			&body, &n, more);
	if (err)
		return err;
	if ((int)n > *count) {
		n = (uint32_t)*count;
		*more = 1;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct pm_task_ent e;
		memcpy(&e, body + sizeof(struct pm_list_rep) + i * sizeof(e),
		       sizeof(e));
		tasks[i] = (struct pm_task_info){ .task = e.task, .uid = e.uid,
			.pid = e.pid, .guaranteed = e.guaranteed,
			.extra_limit = e.extra_limit, .allocated = e.allocated,
			.extra_allocated = e.extra_allocated,
			.containers = e.containers, .handles = e.handles,
			.proxy = !!(e.flags & PM_TASK_PROXY) };
	}
	*count = (int)n;
	free(body);
	return 0;
}

error_t pm_debug_containers(pm_t *pm, pm_task_t task, uint64_t after,
			    struct pm_container_info *conts, int *count,
			    int *more)
{
	uint8_t *body;
	uint32_t n;
	error_t err;

	if (!conts || !count || *count < 0)
		return EINVAL;
	err = call_list(pm, PM_MSG_CONTAINERS, task, after,
			sizeof(struct pm_container_ent), &body, &n, more);
	if (err)
		return err;
	if ((int)n > *count) {
		n = (uint32_t)*count;
		*more = 1;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct pm_container_ent e;
		memcpy(&e, body + sizeof(struct pm_list_rep) + i * sizeof(e),
		       sizeof(e));
		conts[i] = (struct pm_container_info){ .id = e.id,
			.owner = e.owner, .frames = e.frames,
			.remote = e.remote, .cow = e.cow, .shares = e.shares,
			.locked_ms_left = e.locked_ms_left };
	}
	*count = (int)n;
	free(body);
	return 0;
}

error_t pm_debug_move(pm_t *pm, container_t container, frame_t frame)
{
	struct pm_move_req req = { .handle = container, .frame = frame };

	return pmc_call(pm, PM_MSG_MOVE, &req, sizeof(req), NULL, 0, NULL);
}

int pm_debug_follows(pm_t *pm)
{
	return pm && pmc_follow_on(&pm->follow);
}

error_t pm_debug_drain(pm_t *pm, unsigned timeout_ms, uint64_t *slots,
		       pm_node_t *node)
{
	struct pm_drain_req req = { .timeout_ms = timeout_ms };
	struct pm_drain_rep rep;
	uint64_t culprit = 0;
	error_t err = pmc_call(pm, PM_MSG_DRAIN, &req, sizeof(req), &rep,
			       sizeof(rep), &culprit);

	if (!err && slots)
		*slots = rep.slots;
	if (err && node)
		*node = (pm_node_t)culprit;
	return err;
}

error_t pm_debug_ping(pm_t *pm, pm_node_t node, uint64_t *rtt_ns)
{
	struct pm_ping_req req = { .node = node };
	struct pm_ping_rep rep;
	error_t err = pmc_call(pm, PM_MSG_PING_NODE, &req, sizeof(req), &rep,
			       sizeof(rep), NULL);

	if (!err && rtt_ns)
		*rtt_ns = rep.rtt_ns;
	return err;
}
