/* follow.c - mappings that follow their frames (see follow.h). */
#include "follow.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pm_proto.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* A fault the pmd has no room for yet asks again every millisecond,
 * this many times (about two seconds) before the page reads as zeros. */
#define PMC_FAULT_NOMEM_TRIES 2000u

struct pmc_fmap {
	uint8_t *addr;                 /* (F) where */
	size_t len;                    /* (F) bytes */
	uint64_t seg;                  /* (F) the segment mapped there */
	uint32_t slot;                 /* (F) slot mapped at addr */
	int prot;                      /* (F) as the task asked */
	container_t cont;              /* (F) frames' container; 0: unknown */
	frame_t frame;                 /* (F) frame mapped at addr */
	bool dropped;                  /* (F) a stand-in for a mapping the
	                                * pmd took away (see drop_page) */
};

struct pmc_fseg {
	uint64_t seg;                  /* (F) */
	int fd;                        /* (F) the fault session's descriptor */
	struct pmc_fseg *next;         /* (F) in f->segs */
};

/* A STOP in force: its entries, until the RESUME of its seq. */
struct pmc_fstop {
	uint32_t seq;                  /* (F) */
	uint32_t n;                    /* (F) */
	struct pm_stop_ent *e;         /* (F) */
	struct pmc_fstop *next;        /* (F) in f->stops */
};

/* A slot shared copy-on-write (PM_STOP_COW). */
struct pmc_fcow {
	uint64_t seg;
	uint32_t slot;
};

/* A fault that waits for a RESUME (or is released: ready). */
struct pmc_fdefer {
	uintptr_t page;
	bool wp;                       /* a store to a write-protected page */
	bool ready;                    /* its stop ended: serve it */
};

void pmc_follow_init(struct pmc_follow *f)
{
	memset(f, 0, sizeof(*f));
	f->uffd = f->sock = f->stop_fd = f->gone_fd = -1;
	pthread_mutex_init(&f->lock, NULL);
}

error_t pmc_follow_open(struct pmc_follow *f, const char **why)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MISSING_SHMEM |
					      UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	int fd;

	/* Kernel-mode faults too (a moved frame handed to a system call)
	 * need privilege or vm.unprivileged_userfaultfd=1; user-mode faults
	 * alone are open to everyone since Linux 5.11. */
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && (errno == EPERM || errno == EACCES))
		fd = (int)syscall(SYS_userfaultfd,
				  O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		error_t err = errno;
		*why = err == ENOSYS ? "the kernel has no userfaultfd"
				     : "userfaultfd is not permitted";
		return err;
	}
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		error_t err = errno;
		*why = "userfaultfd lacks missing-page faults or "
		       "write-protection on shared memory";
		close(fd);
		return err;
	}
	f->rx = malloc(PM_MSG_MAX + 1);
	f->gone_fd = memfd_create("pm-gone", MFD_CLOEXEC);
	if (!f->rx || f->gone_fd < 0) {
		error_t err = f->rx ? errno : ENOMEM;
		free(f->rx);
		f->rx = NULL;
		close(fd);
		*why = f->gone_fd < 0 ? "memfd_create" : "no memory";
		return err;
	}
	f->uffd = fd;
	return 0;
}

static bool follow_notify(struct pmc_follow *f, const uint8_t *msg, size_t n);

/* One request on the fault session; the reply body goes to body (exactly
 * body_len bytes on success), a descriptor to *fd_out (-1: none). The
 * pmd's own messages that come meanwhile are served as they come. */
static error_t fault_call(struct pmc_follow *f, uint16_t type, const void *req,
			  uint32_t req_len, void *body, uint32_t body_len,
			  int *fd_out)
{
	uint8_t tx[64] __attribute__((aligned(8)));
	const struct pm_msg_hdr *rh = (const struct pm_msg_hdr *)f->rx;
	const struct pm_reply *rep = (const struct pm_reply *)(rh + 1);
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)tx;
	uint32_t len = (uint32_t)sizeof(*h) + req_len;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = f->rx, .iov_len = PM_MSG_MAX + 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fd;
	ssize_t n;
	error_t err;

	*fd_out = -1;
	pm_msg_hdr_init(h, type, len, ++f->seq);
	memcpy(h + 1, req, req_len);
	do
		n = send(f->sock, tx, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len)
		return ECONNRESET;
	for (;;) {
		fd = -1;
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		do
			n = recvmsg(f->sock, &msg, MSG_CMSG_CLOEXEC);
		while (n < 0 && errno == EINTR);
		if (n <= 0)
			return ECONNRESET;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
		     c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET ||
			    c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int got[4];
			memcpy(got, CMSG_DATA(c), sizeof(int) * k);
			for (size_t i = 0; i < k; i++) {
				if (fd < 0)
					fd = got[i];
				else
					close(got[i]);
			}
		}
		if ((size_t)n >= sizeof(*rh) && !(rh->type & PM_MSG_REPLY) &&
		    !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && fd < 0) {
			/* The pmd's own message: served, then ours waits on. */
			if (!follow_notify(f, f->rx, (size_t)n))
				return ECONNRESET;
			continue;
		}
		break;
	}
	if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    (size_t)n < PM_REPLY_HDR || rh->magic != PM_PROTO_MAGIC ||
	    rh->version != PM_PROTO_VERSION || rh->length != (uint32_t)n ||
	    rh->type != (type | PM_MSG_REPLY) || rh->seq != f->seq) {
		err = EPROTO;
		goto fail;
	}
	f->status = rep->status;
	err = pm_status_to_errno(rep->status);
	if (err)
		goto fail;
	if ((size_t)n != PM_REPLY_HDR + body_len) {
		err = EPROTO;
		goto fail;
	}
	if (body_len)
		memcpy(body, rep + 1, body_len);
	*fd_out = fd;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	return err;
}

static void *follow_main(void *arg);

error_t pmc_follow_attach(struct pmc_follow *f, const char *path,
			  uint64_t task, const uint8_t key[16],
			  pmc_seg_fd_fn *seg_fd, pmc_local_fn *local,
			  pmc_reclaim_fn *reclaim, void *arg, const char **why)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pm_attach_req req = { .task = task };
	int fd;
	error_t err;

	f->seg_fd = seg_fd;
	f->local = local;
	f->reclaim = reclaim;
	f->arg = arg;
	*why = "cannot open the fault session";
	if (strlen(path) >= sizeof(sa.sun_path))
		return ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	f->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (f->sock < 0)
		return errno;
	if (connect(f->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return errno;
	memcpy(req.key, key, sizeof(req.key));
	err = fault_call(f, PM_MSG_ATTACH, &req, sizeof(req), NULL, 0, &fd);
	if (fd >= 0)
		close(fd);
	if (err)
		return err;
	f->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (f->stop_fd < 0)
		return errno;
	err = pthread_create(&f->thread, NULL, follow_main, f);
	if (err)
		return err;
	f->running = true;
	return 0;
}

void pmc_follow_fini(struct pmc_follow *f)
{
	if (f->running) {
		uint64_t one = 1;
		if (write(f->stop_fd, &one, sizeof(one)) != sizeof(one))
			abort(); /* an eventfd write cannot fail here */
		pthread_join(f->thread, NULL);
		f->running = false;
	}
	/* Closing the userfaultfd releases any thread still waiting. */
	if (f->uffd >= 0)
		close(f->uffd);
	if (f->sock >= 0)
		close(f->sock);
	if (f->stop_fd >= 0)
		close(f->stop_fd);
	if (f->gone_fd >= 0)
		close(f->gone_fd);
	f->uffd = f->sock = f->stop_fd = f->gone_fd = -1;
	for (uint32_t i = 0; i < f->nmaps; i++)
		free(f->maps[i]);
	free(f->maps);
	for (struct pmc_fseg *s = f->segs, *n; s; s = n) {
		n = s->next;
		close(s->fd);
		free(s);
	}
	for (struct pmc_fstop *st = f->stops, *n; st; st = n) {
		n = st->next;
		free(st->e);
		free(st);
	}
	free(f->deferred);
	free(f->cows);
	free(f->rx);
	f->maps = NULL;
	f->nmaps = f->maps_cap = 0;
	f->segs = NULL;
	f->stops = NULL;
	f->deferred = NULL;
	f->rx = NULL;
	f->ndeferred = f->deferred_cap = 0;
	f->cows = NULL;
	f->ncows = f->cows_cap = 0;
	pthread_mutex_destroy(&f->lock);
}

static void fault_warn(error_t err)
{
	static int said;

	if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "libpmclient: a mapped frame the pmd moved "
			"cannot be followed (%s); it reads as zeros\n",
			strerror(err));
}

static void fault_warn_nomem(void)
{
	fault_warn(ENOMEM);
}

/*
 * The registrations are kept sorted by address in f->maps, none
 * overlapping another, so that a fault or a new mapping finds its
 * neighbours by a binary search however many the task holds (their
 * ends are in order too). All below must hold f->lock.
 */

/* The index of the first registration that ends after addr. */
static uint32_t maps_after(const struct pmc_follow *f, const uint8_t *addr)
{
	uint32_t lo = 0, hi = f->nmaps;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct pmc_fmap *m = f->maps[mid];

		if (m->addr + m->len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The registration that covers page, or NULL. */
static struct pmc_fmap *maps_find(const struct pmc_follow *f, uintptr_t page)
{
	uint32_t i = maps_after(f, (const uint8_t *)page);

	return i < f->nmaps && (uintptr_t)f->maps[i]->addr <= page ?
	       f->maps[i] : NULL;
}

/* Room for more registrations, so that what follows cannot fail. */
static bool maps_room(struct pmc_follow *f, uint32_t more)
{
	struct pmc_fmap **v;
	uint32_t cap;

	if (f->nmaps + more <= f->maps_cap)
		return true;
	cap = f->maps_cap ? f->maps_cap * 2 : 64;
	while (cap < f->nmaps + more)
		cap *= 2;
	v = realloc(f->maps, cap * sizeof(*v));
	if (!v)
		return false;
	f->maps = v;
	f->maps_cap = cap;
	return true;
}

static void maps_put(struct pmc_follow *f, uint32_t at, struct pmc_fmap *m)
{
	memmove(&f->maps[at + 1], &f->maps[at],
		(f->nmaps - at) * sizeof(f->maps[0]));
	f->maps[at] = m;
	f->nmaps++;
}

static void maps_del(struct pmc_follow *f, uint32_t at)
{
	f->nmaps--;
	memmove(&f->maps[at], &f->maps[at + 1],
		(f->nmaps - at) * sizeof(f->maps[0]));
}

/* Cuts [lo, hi) out of the registrations: a new mapping replaced what
 * was there, so every address has one registration, the newest. A
 * registration that reaches past hi keeps its part there (the same
 * registration, its start moved, when nothing of it lies before lo).
 * false: no memory to split one (its part past hi is then dropped). */
static bool maps_carve(struct pmc_follow *f, uint8_t *lo, uint8_t *hi)
{
	uint32_t i = maps_after(f, lo);
	bool ok = true;

	while (i < f->nmaps && f->maps[i]->addr < hi) {
		struct pmc_fmap *m = f->maps[i], *tail;
		uint8_t *end = m->addr + m->len;
		uint32_t k;

		if (end > hi) {
			k = (uint32_t)((size_t)(hi - m->addr) / PM_FRAME_SIZE);
			if (m->addr >= lo) { /* the part after the cut stays */
				m->addr = hi;
				m->len = (size_t)(end - hi);
				m->slot += k;
				m->frame = m->cont ? m->frame + k : 0;
				break;
			}
			/* Both parts stay: the one after the cut apart. */
			tail = malloc(sizeof(*tail));
			if (tail && maps_room(f, 1)) {
				*tail = *m;
				tail->addr = hi;
				tail->len = (size_t)(end - hi);
				tail->slot = m->slot + k;
				tail->frame = m->cont ? m->frame + k : 0;
				maps_put(f, i + 1, tail);
			} else {
				free(tail);
				ok = false;
			}
			m->len = (size_t)(lo - m->addr);
			break;
		}
		if (m->addr < lo) { /* the part before the cut stays */
			m->len = (size_t)(lo - m->addr);
			i++;
			continue;
		}
		maps_del(f, i);
		free(m);
	}
	return ok;
}

static void stops_apply(struct pmc_follow *f, struct pmc_fmap *m);
static void stop_apply(struct pmc_follow *f, const struct pm_stop_ent *e,
		       struct pmc_fmap *m);

/* Notes [addr, addr + len) as registered; the stops in force reach it.
 * Must hold f->lock. false (m not taken): no memory for its entry. */
static bool maps_insert(struct pmc_follow *f, struct pmc_fmap *m)
{
	if (!maps_room(f, 2)) /* (a split, and m) */
		return false;
	if (!maps_carve(f, m->addr, m->addr + m->len))
		fault_warn_nomem();
	maps_put(f, maps_after(f, m->addr), m);
	/* The shared slots first: a stop that drops pages may take m. */
	for (uint32_t i = 0; i < f->ncows && (m->prot & PROT_WRITE); i++) {
		struct pm_stop_ent e = { .segment = f->cows[i].seg,
					 .slot = f->cows[i].slot, .nslots = 1,
					 .kind = PM_STOP_COW };
		if (m->seg == e.segment)
			stop_apply(f, &e, m);
	}
	stops_apply(f, m);
	return true;
}

error_t pmc_follow_register(struct pmc_follow *f, void *addr, size_t len)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};

	if (f->uffd < 0)
		return 0;
	return ioctl(f->uffd, UFFDIO_REGISTER, &reg) < 0 ? errno : 0;
}

error_t pmc_follow_add(struct pmc_follow *f, void *addr, size_t len,
		       uint64_t seg, uint32_t slot, int prot, container_t c,
		       frame_t frame)
{
	error_t err = pmc_follow_register(f, addr, len);

	return err ? err : pmc_follow_note(f, addr, len, seg, slot, prot, c,
					   frame);
}

error_t pmc_follow_note(struct pmc_follow *f, void *addr, size_t len,
			uint64_t seg, uint32_t slot, int prot, container_t c,
			frame_t frame)
{
	struct pmc_fmap *m;

	if (f->uffd < 0)
		return 0;
	m = malloc(sizeof(*m));
	if (!m)
		return ENOMEM;
	*m = (struct pmc_fmap){ .addr = addr, .len = len, .seg = seg,
				.slot = slot, .prot = prot, .cont = c,
				.frame = frame };
	pthread_mutex_lock(&f->lock);
	if (!maps_insert(f, m)) {
		pthread_mutex_unlock(&f->lock);
		free(m);
		return ENOMEM;
	}
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void pmc_follow_forget(struct pmc_follow *f, void *addr, size_t len)
{
	if (f->uffd < 0)
		return;
	pthread_mutex_lock(&f->lock);
	if (!maps_carve(f, addr, (uint8_t *)addr + len))
		fault_warn_nomem();
	pthread_mutex_unlock(&f->lock);
}

/* ---- stops: the pmd's messages ---- */

/* Pages [*k0, *k1) of m hold slots [lo, hi) of seg; false: none do. */
static bool map_overlap(const struct pmc_fmap *m, uint64_t seg, uint32_t lo,
			uint32_t hi, uint32_t *k0, uint32_t *k1)
{
	uint32_t n = (uint32_t)(m->len / PM_FRAME_SIZE);

	if (m->seg != seg || hi <= m->slot || lo >= m->slot + n)
		return false;
	*k0 = lo > m->slot ? lo - m->slot : 0;
	*k1 = (hi < m->slot + n ? hi : m->slot + n) - m->slot;
	return true;
}

/* Write-protects (on) or releases n pages; releasing wakes who waits
 * there. In one call where the kernel takes it (the range lies in one
 * mapping: callers pass pages of one registration), else page by page
 * (a range may span mappings that replaced single pages). */
static void wp_pages(struct pmc_follow *f, uint8_t *addr, uint32_t n, bool on)
{
	struct uffdio_writeprotect all = {
		.range = { .start = (uintptr_t)addr,
			   .len = (size_t)n * PM_FRAME_SIZE },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	if (n > 1 && ioctl(f->uffd, UFFDIO_WRITEPROTECT, &all) == 0)
		return;
	for (uint32_t i = 0; i < n; i++) {
		struct uffdio_writeprotect w = {
			.range = { .start = (uintptr_t)addr + (uintptr_t)i * PM_FRAME_SIZE,
				   .len = PM_FRAME_SIZE },
			.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
		};
		ioctl(f->uffd, UFFDIO_WRITEPROTECT, &w);
	}
}

/* Takes page k of m away: an anonymous page registered for missing
 * faults takes its place, noted as standing for what it did, so that a
 * touch faults and finds the frame where it is then (a page of a
 * whole-segment view stands for frame of cont when cont is given: the
 * frame the fault found it stood for). Must hold f->lock; m may be
 * freed. */
static void drop_page(struct pmc_follow *f, struct pmc_fmap *m, uint32_t k,
		      container_t cont, frame_t frame)
{
	uint8_t *page = m->addr + (size_t)k * PM_FRAME_SIZE;
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)page, .len = PM_FRAME_SIZE },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	struct pmc_fmap *p = malloc(sizeof(*p));

	if (!p || !maps_room(f, 2)) { /* (a split, and p) */
		free(p);
		fault_warn_nomem(); /* its view stays: only ours at stake */
		return;
	}
	*p = (struct pmc_fmap){ .addr = page, .len = PM_FRAME_SIZE,
				.seg = m->seg, .slot = m->slot + k,
				.prot = m->prot,
				.cont = m->cont ? m->cont : cont,
				.frame = m->cont ? m->frame + k : frame,
				.dropped = true };
	if (mmap(page, PM_FRAME_SIZE, m->prot | PROT_READ,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED ||
	    ioctl(f->uffd, UFFDIO_REGISTER, &reg) < 0) {
		fault_warn(errno);
		free(p);
		return;
	}
	if (!maps_carve(f, page, page + PM_FRAME_SIZE))
		fault_warn_nomem();
	maps_put(f, maps_after(f, page), p);
}

/* What entry e asks of registration m. Must hold f->lock; m may go. */
static void stop_apply(struct pmc_follow *f, const struct pm_stop_ent *e,
		       struct pmc_fmap *m)
{
	uint32_t k0, k1;

	if (m->dropped || !map_overlap(m, e->segment, e->slot,
				       e->slot + e->nslots, &k0, &k1))
		return;
	if (e->kind == PM_STOP_WP || e->kind == PM_STOP_COW) {
		if (m->prot & PROT_WRITE)
			wp_pages(f, m->addr + (size_t)k0 * PM_FRAME_SIZE,
				 k1 - k0, true);
		return;
	}
	/* Dropping splits m: from the last page down, so that the pages
	 * still to do stay in m. */
	for (uint32_t k = k1; k-- > k0;)
		if (!m->cont || e->frame == PM_STOP_ANY ||
		    m->frame + k == e->frame)
			drop_page(f, m, k, 0, 0);
}

/* Entry e applied to the registrations that start in [lo, hi). Each may
 * split or go, only within itself and without touching those before it
 * in the array: what it leaves is at its index and on, passed over. */
static void maps_apply_range(struct pmc_follow *f, const struct pm_stop_ent *e,
			     uint8_t *lo, uint8_t *hi)
{
	uint32_t i = maps_after(f, lo);

	while (i < f->nmaps && f->maps[i]->addr < hi) {
		struct pmc_fmap *x = f->maps[i];
		uint8_t *end = x->addr + x->len;

		if (x->addr >= lo)
			stop_apply(f, e, x);
		while (i < f->nmaps && f->maps[i]->addr < end)
			i++;
	}
}

/* Every stop in force, applied to a new registration. */
static void stops_apply(struct pmc_follow *f, struct pmc_fmap *m)
{
	uint8_t *addr = m->addr;
	size_t len = m->len;

	for (struct pmc_fstop *st = f->stops; st; st = st->next)
		for (uint32_t i = 0; i < st->n; i++)
			/* m may have been split: apply to what covers it. */
			maps_apply_range(f, &st->e[i], addr, addr + len);
}

/* Whether a stop in force names the page of registration m at k. */
static bool stopped(const struct pmc_follow *f, const struct pmc_fmap *m,
		    uint32_t k)
{
	for (const struct pmc_fstop *st = f->stops; st; st = st->next)
		for (uint32_t i = 0; i < st->n; i++) {
			const struct pm_stop_ent *e = &st->e[i];
			uint32_t slot = m->slot + k;

			if (e->segment != m->seg || slot < e->slot ||
			    slot >= e->slot + e->nslots)
				continue;
			if (e->kind != PM_STOP_DROP || !m->cont ||
			    e->frame == PM_STOP_ANY || e->frame == m->frame + k)
				return true;
		}
	return false;
}

static bool stop_valid(const struct pm_stop_ent *e, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if ((e[i].kind != PM_STOP_WP && e[i].kind != PM_STOP_DROP &&
		     e[i].kind != PM_STOP_COW) ||
		    e[i].nslots == 0 || e[i].slot >= PM_SEGMENT_SLOTS ||
		    e[i].nslots > PM_SEGMENT_SLOTS - e[i].slot)
			return false;
	return true;
}

/* Whether msg (n bytes, a header checked already) carries a STOP's body
 * (struct pm_stop and its entries) that is right. */
static bool stop_body_valid(const uint8_t *msg, size_t n)
{
	const struct pm_stop *sp =
		(const struct pm_stop *)(msg + sizeof(struct pm_msg_hdr));
	size_t fixed = sizeof(struct pm_msg_hdr) + sizeof(*sp);

	return n >= fixed && sp->count <= PM_STOP_MAX &&
	       n == fixed + (size_t)sp->count * sizeof(struct pm_stop_ent) &&
	       stop_valid((const struct pm_stop_ent *)(sp + 1), sp->count);
}

static void reply_stop(struct pmc_follow *f, uint32_t seq, error_t err)
{
	uint8_t tx[PM_REPLY_HDR] __attribute__((aligned(8)));
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)tx;
	struct pm_reply *rep = (struct pm_reply *)(h + 1);

	memset(tx, 0, sizeof(tx));
	pm_msg_hdr_init(h, PM_MSG_STOP | PM_MSG_REPLY, PM_REPLY_HDR, seq);
	rep->status = pm_errno_to_status(err);
	while (send(f->sock, tx, sizeof(tx), MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

/* ---- copy-on-write slots: stores there ask the pmd to break ---- */

static int cow_find(const struct pmc_follow *f, uint64_t seg, uint32_t slot)
{
	for (uint32_t i = 0; i < f->ncows; i++)
		if (f->cows[i].seg == seg && f->cows[i].slot == slot)
			return (int)i;
	return -1;
}

/* Forgets shared slots that no writable mapping of ours shows any more
 * (the frames broke away, or were unmapped). Must hold f->lock. */
static void cow_prune(struct pmc_follow *f)
{
	uint32_t k0, k1, i = 0;

	while (i < f->ncows) {
		bool used = false;

		for (uint32_t j = 0; j < f->nmaps && !used; j++) {
			const struct pmc_fmap *m = f->maps[j];

			used = (m->prot & PROT_WRITE) && !m->dropped &&
			       map_overlap(m, f->cows[i].seg, f->cows[i].slot,
					   f->cows[i].slot + 1, &k0, &k1);
		}
		if (used)
			i++;
		else
			f->cows[i] = f->cows[--f->ncows];
	}
}

/* Notes slots slot.. of seg as shared. Must hold f->lock. */
static void cow_add(struct pmc_follow *f, uint64_t seg, uint32_t slot,
		    uint32_t n)
{
	for (uint32_t k = 0; k < n; k++) {
		if (cow_find(f, seg, slot + k) >= 0)
			continue;
		if (f->ncows == f->cows_cap)
			cow_prune(f);
		if (f->ncows == f->cows_cap) {
			uint32_t cap = f->cows_cap ? f->cows_cap * 2 : 16;
			struct pmc_fcow *v = realloc(f->cows, cap * sizeof(*v));
			if (!v) {
				/* Its pages stay protected: a store asks the
				 * pmd all the same (fault_one). */
				fault_warn_nomem();
				return;
			}
			f->cows = v;
			f->cows_cap = cap;
		}
		f->cows[f->ncows++] = (struct pmc_fcow){ .seg = seg,
							 .slot = slot + k };
	}
}

/* Whether a store to slot of seg must still wait: a stop in force
 * write-protects it, or it is shared copy-on-write. Must hold f->lock. */
static bool wp_held(const struct pmc_follow *f, uint64_t seg, uint32_t slot)
{
	for (const struct pmc_fstop *x = f->stops; x; x = x->next)
		for (uint32_t i = 0; i < x->n; i++) {
			const struct pm_stop_ent *e = &x->e[i];

			if (e->kind != PM_STOP_DROP && e->segment == seg &&
			    slot >= e->slot && slot < e->slot + e->nslots)
				return true;
		}
	return cow_find(f, seg, slot) >= 0;
}

/* Pages [k0, k1) of writable registration m take stores again (which
 * wakes who waits there), but those that something else still holds:
 * by runs of free pages, so that no store slips through a page that
 * stays held (never released and protected again). Must hold f->lock. */
static void wp_release(struct pmc_follow *f, struct pmc_fmap *m, uint32_t k0,
		       uint32_t k1)
{
	uint32_t run = 0;

	for (uint32_t k = k0; k <= k1; k++) {
		if (k < k1 && !wp_held(f, m->seg, m->slot + k)) {
			run++;
			continue;
		}
		if (run)
			wp_pages(f, m->addr + (size_t)(k - run) * PM_FRAME_SIZE,
				 run, false);
		run = 0;
	}
}

/* Slots slot.. of seg are not shared any more: their writable mappings
 * take stores again, where no stop holds them. Must hold f->lock. */
static void cow_forget(struct pmc_follow *f, uint64_t seg, uint32_t slot,
		       uint32_t n)
{
	uint32_t k0, k1;

	for (uint32_t i = 0; i < f->ncows;) {
		if (f->cows[i].seg == seg && f->cows[i].slot >= slot &&
		    f->cows[i].slot - slot < n)
			f->cows[i] = f->cows[--f->ncows];
		else
			i++;
	}
	for (uint32_t i = 0; i < f->nmaps; i++) {
		struct pmc_fmap *m = f->maps[i];

		if ((m->prot & PROT_WRITE) && !m->dropped &&
		    map_overlap(m, seg, slot, slot + n, &k0, &k1))
			wp_release(f, m, k0, k1);
	}
}

/* BREAK found the slot not shared any more. */
static void cow_end(struct pmc_follow *f, uint64_t seg, uint32_t slot)
{
	pthread_mutex_lock(&f->lock);
	cow_forget(f, seg, slot, 1);
	pthread_mutex_unlock(&f->lock);
}

/* Stores to what WP entry e names go on, but where another stop or a
 * copy-on-write share still protects them. Must hold f->lock; e is no
 * longer among the stops in force. */
static void stop_release(struct pmc_follow *f, const struct pm_stop_ent *e)
{
	uint32_t k0, k1;

	for (uint32_t i = 0; i < f->nmaps; i++) {
		struct pmc_fmap *m = f->maps[i];

		if ((m->prot & PROT_WRITE) && !m->dropped &&
		    map_overlap(m, e->segment, e->slot, e->slot + e->nslots,
				&k0, &k1))
			wp_release(f, m, k0, k1);
	}
}

/* Ends stop st (NULL: every stop): stores go on, the faults that waited
 * for it are released (served at the thread's next turn). */
static void stop_end(struct pmc_follow *f, struct pmc_fstop *st)
{
	pthread_mutex_lock(&f->lock);
	for (struct pmc_fstop **pp = &f->stops; *pp;) {
		struct pmc_fstop *x = *pp;

		if (st && x != st) {
			pp = &x->next;
			continue;
		}
		*pp = x->next;
		for (uint32_t i = 0; i < x->n; i++) {
			const struct pm_stop_ent *e = &x->e[i];

			if (e->kind != PM_STOP_WP)
				continue;
			stop_release(f, e);
		}
		free(x->e);
		free(x);
	}
	pthread_mutex_unlock(&f->lock);
	for (uint32_t i = 0; i < f->ndeferred; i++)
		f->deferred[i].ready = true; /* each is checked again */
}

/* A message of the pmd's own (STOP, RESUME); false when it breaks the
 * rules (the session is then useless). */
static bool follow_notify(struct pmc_follow *f, const uint8_t *msg, size_t n)
{
	const struct pm_msg_hdr *h = (const struct pm_msg_hdr *)msg;
	const struct pm_stop *sp = (const struct pm_stop *)(h + 1);
	struct pmc_fstop *st;

	if (n < sizeof(*h) || h->magic != PM_PROTO_MAGIC ||
	    h->version != PM_PROTO_VERSION || h->length != (uint32_t)n)
		return false;
	if (h->type == PM_MSG_RECLAIM) {
		const struct pm_reclaim *rq = (const struct pm_reclaim *)(h + 1);

		if (n != sizeof(*h) + sizeof(*rq) || !rq->frames)
			return false;
		if (f->reclaim)
			f->reclaim(f->arg, rq->frames);
		return true;
	}
	if (h->type == PM_MSG_UNSHARED) {
		/* From the pmd alone, with no reply: a body that is not
		 * right is ignored (its slots stay protected, and a store
		 * there asks the pmd). */
		const struct pm_stop_ent *e = (const struct pm_stop_ent *)(sp + 1);

		if (!stop_body_valid(msg, n))
			return true;
		pthread_mutex_lock(&f->lock);
		for (uint32_t i = 0; i < sp->count; i++)
			if (e[i].kind == PM_STOP_COW)
				cow_forget(f, e[i].segment, e[i].slot,
					   e[i].nslots);
		pthread_mutex_unlock(&f->lock);
		return true;
	}
	if (h->type == PM_MSG_RESUME) {
		pthread_mutex_lock(&f->lock);
		for (st = f->stops; st && st->seq != h->seq; st = st->next)
			;
		pthread_mutex_unlock(&f->lock);
		if (st)
			stop_end(f, st);
		return true;
	}
	if (h->type != PM_MSG_STOP)
		return false;
	if (!stop_body_valid(msg, n)) {
		reply_stop(f, h->seq, EINVAL);
		return true;
	}
	st = calloc(1, sizeof(*st));
	if (st)
		st->e = malloc((size_t)sp->count * sizeof(*st->e) + 1);
	if (!st || !st->e) {
		if (st)
			free(st);
		reply_stop(f, h->seq, ENOMEM);
		return true;
	}
	st->seq = h->seq;
	st->n = sp->count;
	memcpy(st->e, sp + 1, (size_t)sp->count * sizeof(*st->e));
	pthread_mutex_lock(&f->lock);
	st->next = f->stops;
	f->stops = st;
	for (uint32_t i = 0; i < st->n; i++) {
		if (st->e[i].kind == PM_STOP_COW)
			cow_add(f, st->e[i].segment, st->e[i].slot,
				st->e[i].nslots);
		maps_apply_range(f, &st->e[i], NULL, (uint8_t *)UINTPTR_MAX);
	}
	f->stops_served++;
	pthread_mutex_unlock(&f->lock);
	reply_stop(f, h->seq, 0);
	return true;
}

/* Maps one page of fd (-1: a private anonymous page) over page, which
 * follows nothing from now on, and wakes the faulting thread; false
 * (not woken) when the mapping failed. */
static bool fault_cover(struct pmc_follow *f, uintptr_t page, int prot,
			int fd)
{
	struct uffdio_range r = { .start = page, .len = PM_FRAME_SIZE };

	if (mmap((void *)page, PM_FRAME_SIZE, prot | PROT_READ, MAP_FIXED |
		 (fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED), fd,
		 0) == MAP_FAILED)
		return false;
	pthread_mutex_lock(&f->lock);
	if (!maps_carve(f, (uint8_t *)page, (uint8_t *)page + PM_FRAME_SIZE))
		fault_warn_nomem();
	pthread_mutex_unlock(&f->lock);
	ioctl(f->uffd, UFFDIO_WAKE, &r);
	return true;
}

/* The page reads as zeros from now on, and stores to it go nowhere: a
 * private page of ours, never the segment's (filling a hole of a segment
 * would hide a later move from every other mapping of that slot). */
static void fault_zero(struct pmc_follow *f, uintptr_t page, int prot)
{
	struct uffdio_range r = { .start = page, .len = PM_FRAME_SIZE };

	if (!fault_cover(f, page, prot, -1))
		ioctl(f->uffd, UFFDIO_WAKE, &r);
}

/* The frame is gone (taken back by the pmd: its contents are lost):
 * the page becomes one of an empty file, so that a touch raises SIGBUS,
 * as with a truncated file, never another frame's bytes (else zeros). */
static void fault_gone(struct pmc_follow *f, uintptr_t page, int prot)
{
	if (!fault_cover(f, page, prot, f->gone_fd))
		fault_zero(f, page, prot);
}

static int fault_seg_fd(struct pmc_follow *f, uint64_t seg, int got)
{
	struct pmc_fseg *s;
	int fd = -1;

	pthread_mutex_lock(&f->lock);
	for (s = f->segs; s && fd < 0; s = s->next)
		if (s->seg == seg)
			fd = s->fd;
	if (fd < 0 && got >= 0 && (s = malloc(sizeof(*s)))) {
		*s = (struct pmc_fseg){ .seg = seg, .fd = got, .next = f->segs };
		f->segs = s;
		fd = got;
		got = -1;
	}
	pthread_mutex_unlock(&f->lock);
	if (got >= 0)
		close(got); /* had it already, or no memory to keep it */
	return fd >= 0 ? fd : f->seg_fd(f->arg, seg);
}

int pmc_follow_seg_dup(struct pmc_follow *f, uint64_t seg)
{
	int fd = -1;

	pthread_mutex_lock(&f->lock);
	for (struct pmc_fseg *s = f->segs; s && fd < 0; s = s->next)
		if (s->seg == seg)
			fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_unlock(&f->lock);
	return fd;
}

/* Maps the frame's new place over the faulting page, registers it in
 * turn (so it follows the next move) and wakes the faulting thread. */
static error_t fault_map(struct pmc_follow *f, uintptr_t page,
			 const struct pmc_place *place, int prot,
			 uint64_t *counter)
{
	struct uffdio_range r = { .start = page, .len = PM_FRAME_SIZE };
	error_t err;

	/* A writable mapping of a copy-on-write frame stays writable, but
	 * protected: a store breaks the copy first (BREAK). */
	bool cow = place->cow && (prot & PROT_WRITE);

	if (cow) {
		pthread_mutex_lock(&f->lock);
		cow_add(f, place->seg, place->slot, 1);
		pthread_mutex_unlock(&f->lock);
	}
	if (mmap((void *)page, PM_FRAME_SIZE, prot, MAP_SHARED | MAP_FIXED,
		 place->fd, (off_t)place->slot * PM_FRAME_SIZE) == MAP_FAILED)
		return errno;
	err = pmc_follow_add(f, (void *)page, PM_FRAME_SIZE, place->seg,
			     place->slot, prot, place->cont, place->frame);
	if (err) {
		/* Mapped; it cannot follow the next move. A shared frame
		 * must not take stores unprotected. */
		fault_warn(err);
		if (cow)
			mprotect((void *)page, PM_FRAME_SIZE, PROT_READ);
	}
	pthread_mutex_lock(&f->lock);
	(*counter)++;
	pthread_mutex_unlock(&f->lock);
	ioctl(f->uffd, UFFDIO_WAKE, &r);
	return 0;
}

static void follow_fault(struct pmc_follow *f, uintptr_t addr)
{
	uintptr_t page = addr & ~(uintptr_t)(PM_FRAME_SIZE - 1);
	struct pm_resolve_req req = { 0 };
	struct pm_resolve_rep rep;
	struct pmc_fmap *m;
	struct pmc_place place;
	container_t cont = 0;
	frame_t frame = 0;
	int prot = PROT_READ, fd;
	bool found = false, dropped = false, local;
	error_t err;

	pthread_mutex_lock(&f->lock);
	m = maps_find(f, page);
	if (m) {
		uint32_t k = (uint32_t)((page - (uintptr_t)m->addr) /
					PM_FRAME_SIZE);

		req.segment = m->seg;
		req.slot = m->slot + k;
		prot = m->prot;
		cont = m->cont;
		frame = m->frame + k;
		dropped = m->dropped;
		found = true;
	}
	pthread_mutex_unlock(&f->lock);
	if (!found) {
		if (getenv("PM_DEBUG_FOLLOW"))
			fprintf(stderr, "libpmclient: a fault at %#lx, which no "
				"mapping of ours covers: zeros\n",
				(unsigned long)page);
		fault_zero(f, page, prot);
		return;
	}
	/* The session's frame view usually knows already: the pmd updates
	 * it before it takes the old page away. A page of the very slot
	 * is right only where the pmd took the mapping away (the slot
	 * lives on); a hole there means the view has not caught up. The
	 * view's copy-on-write flag outlives the share until the pmd looks
	 * at the frame again: for a writable mapping, where it decides
	 * whether stores must ask first, the pmd says. */
	place.cont = 0;
	local = f->local &&
		f->local(f->arg, req.segment, req.slot, cont, frame, &place);
	/* A page of a whole-segment view names only its slot, which may
	 * hold other frames now (the other side of a copy): it stands for
	 * the frame the fast path gave its address out for, asked for by
	 * frame from here on. */
	if (!cont && place.cont) {
		cont = place.cont;
		frame = place.frame;
		dropped = true;
	}
	if (local &&
	    (dropped || place.seg != req.segment || place.slot != req.slot) &&
	    !(place.cow && (prot & PROT_WRITE)) &&
	    (place.fd >= 0 || (place.fd = fault_seg_fd(f, place.seg, -1)) >= 0) &&
	    fault_map(f, page, &place, prot, &f->resolved_local) == 0)
		return;
	for (unsigned tries = 0;; tries++) {
		/* A mapping the pmd took away stands on a slot that may live
		 * on for other frames: ask by frame. */
		struct pm_where_req wq = { .handle = cont, .frame = frame };

		if (dropped && cont)
			err = fault_call(f, PM_MSG_WHERE, &wq, sizeof(wq), &rep,
					 sizeof(rep), &fd);
		else
			err = fault_call(f, PM_MSG_RESOLVE, &req, sizeof(req),
					 &rep, sizeof(rep), &fd);
		/* Locked by a server: the owner waits, as its maps do. No
		 * room for the frame here yet (the pmd makes some under
		 * pressure): a while, before giving up on it. */
		if (err != EBUSY && (err != ENOMEM || tries >= PMC_FAULT_NOMEM_TRIES))
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	if (err == ESTALE && f->status == PM_ST_FRAME_LOST) {
		fault_gone(f, page, prot);
		return;
	}
	if (err) {
		if (err != ENOENT && err != EACCES && err != ESTALE)
			fault_warn(err); /* (else gone, or revoked) */
		if (getenv("PM_DEBUG_FOLLOW"))
			fprintf(stderr, "libpmclient: %s of segment %lu slot %u "
				"(frame %lu): %s; zeros from now on\n",
				dropped && cont ? "WHERE" : "RESOLVE",
				(unsigned long)req.segment, req.slot,
				(unsigned long)frame, strerror(err));
		fault_zero(f, page, prot);
		return;
	}
	place = (struct pmc_place){ .cont = cont, .frame = frame,
				    .seg = rep.segment, .slot = rep.slot,
				    .cow = rep.flags & PM_VIEW_COW,
				    .fd = fault_seg_fd(f, rep.segment, fd) };
	err = place.fd < 0 ? EBADF : fault_map(f, page, &place, prot, &f->resolved);
	if (err) {
		fault_warn(err);
		if (getenv("PM_DEBUG_FOLLOW"))
			fprintf(stderr, "libpmclient: mapping segment %lu slot "
				"%u (frame %lu): %s; zeros from now on\n",
				(unsigned long)rep.segment, rep.slot,
				(unsigned long)frame, strerror(err));
		fault_zero(f, page, prot);
	}
}

/* Whether a stop in force names the page (its fault waits). */
static bool fault_stopped(struct pmc_follow *f, uintptr_t page)
{
	struct pmc_fmap *m;
	bool yes = false;

	pthread_mutex_lock(&f->lock);
	m = maps_find(f, page);
	if (m)
		yes = stopped(f, m, (uint32_t)((page - (uintptr_t)m->addr) /
					       PM_FRAME_SIZE));
	pthread_mutex_unlock(&f->lock);
	return yes;
}

static void fault_defer(struct pmc_follow *f, uintptr_t page, bool wp)
{
	if (f->ndeferred == f->deferred_cap) {
		uint32_t cap = f->deferred_cap ? f->deferred_cap * 2 : 16;
		struct pmc_fdefer *d = realloc(f->deferred, cap * sizeof(*d));
		if (!d) {
			/* Served now: this store may be lost to the move,
			 * and it is only ours. */
			fault_warn_nomem();
			struct uffdio_range r = { .start = page,
						  .len = PM_FRAME_SIZE };
			ioctl(f->uffd, UFFDIO_WAKE, &r);
			return;
		}
		f->deferred = d;
		f->deferred_cap = cap;
	}
	f->deferred[f->ndeferred++] = (struct pmc_fdefer){ .page = page, .wp = wp };
}

/* Takes the page of a mapping away (the next touch faults it in where
 * its frame is then; cont and frame as for drop_page) and wakes who
 * waits there. */
static void fault_drop(struct pmc_follow *f, uintptr_t page, container_t cont,
		       frame_t frame)
{
	struct uffdio_range r = { .start = page, .len = PM_FRAME_SIZE };
	struct pmc_fmap *m;

	pthread_mutex_lock(&f->lock);
	m = maps_find(f, page);
	if (m && !m->dropped)
		drop_page(f, m, (uint32_t)((page - (uintptr_t)m->addr) /
					   PM_FRAME_SIZE), cont, frame);
	pthread_mutex_unlock(&f->lock);
	ioctl(f->uffd, UFFDIO_WAKE, &r);
}

/*
 * A store to a write-protected page that no stop holds: its slot is
 * shared copy-on-write (or was: the protection of an ended stop). The
 * pmd breaks the copy of the frame the page stands for; the store then
 * retries and faults the frame in at its private slot.
 */
static void fault_break(struct pmc_follow *f, uintptr_t page)
{
	struct uffdio_range r = { .start = page, .len = PM_FRAME_SIZE };
	struct pm_break_req req = { 0 };
	struct pm_break_rep rep;
	struct pmc_place place;
	struct pmc_fmap *m;
	bool found = false, shared = false;
	int fd;
	error_t err;

	pthread_mutex_lock(&f->lock);
	m = maps_find(f, page);
	if (m) {
		uint32_t k = (uint32_t)((page - (uintptr_t)m->addr) /
					PM_FRAME_SIZE);

		req = (struct pm_break_req){ .segment = m->seg,
					     .slot = m->slot + k,
					     .handle = m->cont,
					     .frame = m->cont ? m->frame + k : 0 };
		found = true;
	}
	shared = found && cow_find(f, req.segment, req.slot) >= 0;
	pthread_mutex_unlock(&f->lock);
	if (!found) {
		ioctl(f->uffd, UFFDIO_WAKE, &r);
		return;
	}
	if (!shared) { /* a stop's protection, the stop gone: release */
		wp_pages(f, (uint8_t *)page, 1, false);
		return;
	}
	/* A page of a whole-segment view stands for the frame the fast
	 * path gave its address out for. */
	if (!req.handle && f->local) {
		place.cont = 0; /* (named even where the view cannot say) */
		f->local(f->arg, req.segment, req.slot, 0, 0, &place);
		req.handle = place.cont;
		req.frame = place.frame;
	}
	if (!req.handle) { /* nobody's frame: the store goes nowhere */
		fault_drop(f, page, 0, 0);
		return;
	}
	for (;;) {
		err = fault_call(f, PM_MSG_BREAK, &req, sizeof(req), &rep,
				 sizeof(rep), &fd);
		if (fd >= 0)
			close(fd);
		if (err != EBUSY)
			break;
		/* Locked by a server: the owner's store waits, as its
		 * requests do. */
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	if (!err && !(rep.flags & PM_BREAK_BROKEN)) {
		cow_end(f, req.segment, req.slot); /* not shared any more */
		return;
	}
	if (err && err != ESTALE)
		fault_warn(err);
	/* Broken (the pmd took the page away) or stale: fault it in, as the
	 * frame it stood for (a page of a whole-segment view names only its
	 * slot, which may live on for the other side of the copy: it is
	 * asked for by frame). */
	fault_drop(f, page, req.handle, req.frame);
}

/* A fault as the kernel reports it. */
static void fault_one(struct pmc_follow *f, const struct uffd_msg *msg)
{
	uintptr_t addr = (uintptr_t)msg->arg.pagefault.address;
	uintptr_t page = addr & ~(uintptr_t)(PM_FRAME_SIZE - 1);
	bool wp = msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP;

	if (fault_stopped(f, page))
		fault_defer(f, page, wp);
	else if (wp)
		fault_break(f, page);
	else
		follow_fault(f, addr);
}

/* The faults whose stops ended: served (each may wait again). */
static void faults_released(struct pmc_follow *f)
{
	uint32_t i = 0;

	while (i < f->ndeferred) {
		struct pmc_fdefer d = f->deferred[i];
		struct uffdio_range r = { .start = d.page, .len = PM_FRAME_SIZE };

		if (!d.ready) {
			i++;
			continue;
		}
		if (fault_stopped(f, d.page)) {
			f->deferred[i++].ready = false;
			continue;
		}
		f->deferred[i] = f->deferred[--f->ndeferred];
		/* A store retries (its page was released, or moved and
		 * faults anew); a touch of a missing page is served. */
		if (d.wp)
			ioctl(f->uffd, UFFDIO_WAKE, &r);
		else
			follow_fault(f, d.page);
	}
}

/* The pmd's messages that wait on the fault session. */
static void notify_read(struct pmc_follow *f)
{
	for (;;) {
		ssize_t n = recv(f->sock, f->rx, PM_MSG_MAX + 1, MSG_DONTWAIT);
		const struct pm_msg_hdr *h = (const struct pm_msg_hdr *)f->rx;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0 || ((size_t)n >= sizeof(*h) && !(h->type & PM_MSG_REPLY) &&
			       !follow_notify(f, f->rx, (size_t)n))) {
			/* The pmd is gone (or broke the rules): nothing it
			 * stopped waits any longer. */
			f->sock_gone = true;
			stop_end(f, NULL);
			return;
		}
	}
}

static void *follow_main(void *arg)
{
	struct pmc_follow *f = arg;
	struct uffd_msg msgs[16];

	for (;;) {
		struct pollfd p[3] = { { .fd = f->uffd, .events = POLLIN },
				       { .fd = f->stop_fd, .events = POLLIN },
				       { .fd = f->sock_gone ? -1 : f->sock,
					 .events = POLLIN } };
		ssize_t n;

		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (p[2].revents)
			notify_read(f);
		faults_released(f);
		if (!p[0].revents)
			continue;
		n = read(f->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				fault_one(f, &msgs[i]);
		faults_released(f);
	}
	return NULL;
}
