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

struct pmc_fmap {
	uint8_t *addr;                 /* (F) where */
	size_t len;                    /* (F) bytes */
	uint64_t seg;                  /* (F) the segment mapped there */
	uint32_t slot;                 /* (F) slot mapped at addr */
	int prot;                      /* (F) as the task asked */
	container_t cont;              /* (F) frames' container; 0: unknown */
	frame_t frame;                 /* (F) frame mapped at addr */
	struct pmc_fmap *next;         /* (F) in f->maps */
};

struct pmc_fseg {
	uint64_t seg;                  /* (F) */
	int fd;                        /* (F) the fault session's descriptor */
	struct pmc_fseg *next;         /* (F) in f->segs */
};

void pmc_follow_init(struct pmc_follow *f)
{
	memset(f, 0, sizeof(*f));
	f->uffd = f->sock = f->stop_fd = -1;
	pthread_mutex_init(&f->lock, NULL);
}

error_t pmc_follow_open(struct pmc_follow *f, const char **why)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_MISSING_SHMEM };
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
		*why = "userfaultfd lacks missing-page faults on shared memory";
		close(fd);
		return err;
	}
	f->uffd = fd;
	return 0;
}

/* One request on the fault session; the reply body goes to body (exactly
 * body_len bytes on success), a descriptor to *fd_out (-1: none). */
static error_t fault_call(struct pmc_follow *f, uint16_t type, const void *req,
			  uint32_t req_len, void *body, uint32_t body_len,
			  int *fd_out)
{
	uint8_t tx[64] __attribute__((aligned(8)));
	uint8_t rx[64] __attribute__((aligned(8)));
	struct pm_msg_hdr *h = (struct pm_msg_hdr *)tx;
	const struct pm_msg_hdr *rh = (const struct pm_msg_hdr *)rx;
	const struct pm_reply *rep = (const struct pm_reply *)(rh + 1);
	uint32_t len = (uint32_t)sizeof(*h) + req_len;
	union {
		char buf[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = rx, .iov_len = sizeof(rx) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = ctl.buf,
			      .msg_controllen = sizeof(ctl.buf) };
	int fd = -1;
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
	do
		n = recvmsg(f->sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return ECONNRESET;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
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
	if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    (size_t)n < PM_REPLY_HDR || rh->magic != PM_PROTO_MAGIC ||
	    rh->version != PM_PROTO_VERSION || rh->length != (uint32_t)n ||
	    rh->type != (type | PM_MSG_REPLY) || rh->seq != f->seq) {
		err = EPROTO;
		goto fail;
	}
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
			  pmc_seg_fd_fn *seg_fd, pmc_local_fn *local, void *arg,
			  const char **why)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pm_attach_req req = { .task = task };
	int fd;
	error_t err;

	f->seg_fd = seg_fd;
	f->local = local;
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
	f->uffd = f->sock = f->stop_fd = -1;
	for (struct pmc_fmap *m = f->maps, *n; m; m = n) {
		n = m->next;
		free(m);
	}
	for (struct pmc_fseg *s = f->segs, *n; s; s = n) {
		n = s->next;
		close(s->fd);
		free(s);
	}
	f->maps = NULL;
	f->segs = NULL;
	pthread_mutex_destroy(&f->lock);
}

error_t pmc_follow_add(struct pmc_follow *f, void *addr, size_t len,
		       uint64_t seg, uint32_t slot, int prot, container_t c,
		       frame_t frame)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	struct pmc_fmap *m;

	if (f->uffd < 0)
		return 0;
	m = malloc(sizeof(*m));
	if (!m)
		return ENOMEM;
	if (ioctl(f->uffd, UFFDIO_REGISTER, &reg) < 0) {
		error_t err = errno;
		free(m);
		return err;
	}
	*m = (struct pmc_fmap){ .addr = addr, .len = len, .seg = seg,
				.slot = slot, .prot = prot, .cont = c,
				.frame = frame };
	pthread_mutex_lock(&f->lock);
	m->next = f->maps;
	f->maps = m;
	pthread_mutex_unlock(&f->lock);
	return 0;
}

void pmc_follow_forget(struct pmc_follow *f, void *addr, size_t len)
{
	uint8_t *lo = addr, *hi = lo + len;

	if (f->uffd < 0)
		return;
	pthread_mutex_lock(&f->lock);
	for (struct pmc_fmap **pp = &f->maps; *pp;) {
		struct pmc_fmap *m = *pp;
		if (m->addr >= lo && m->addr + m->len <= hi) {
			*pp = m->next;
			free(m);
		} else {
			pp = &m->next;
		}
	}
	pthread_mutex_unlock(&f->lock);
}

/* The page reads as zeros (as it would without us). */
static void fault_zero(struct pmc_follow *f, uintptr_t page)
{
	struct uffdio_zeropage z = {
		.range = { .start = page, .len = PM_FRAME_SIZE },
	};
	struct uffdio_range r = { .start = page, .len = PM_FRAME_SIZE };

	if (ioctl(f->uffd, UFFDIO_ZEROPAGE, &z) < 0)
		ioctl(f->uffd, UFFDIO_WAKE, &r);
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

static void fault_warn(error_t err)
{
	static int said;

	if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "libpmclient: a mapped frame the pmd moved "
			"cannot be followed (%s); it reads as zeros\n",
			strerror(err));
}

/* Maps the frame's new place over the faulting page, registers it in
 * turn (so it follows the next move) and wakes the faulting thread. */
static error_t fault_map(struct pmc_follow *f, uintptr_t page,
			 const struct pmc_place *place, int prot,
			 uint64_t *counter)
{
	struct uffdio_range r = { .start = page, .len = PM_FRAME_SIZE };
	error_t err;

	if (place->cow)
		prot &= ~PROT_WRITE; /* never a writable copy-on-write frame */
	if (mmap((void *)page, PM_FRAME_SIZE, prot, MAP_SHARED | MAP_FIXED,
		 place->fd, (off_t)place->slot * PM_FRAME_SIZE) == MAP_FAILED)
		return errno;
	err = pmc_follow_add(f, (void *)page, PM_FRAME_SIZE, place->seg,
			     place->slot, prot, place->cont, place->frame);
	if (err)
		fault_warn(err); /* mapped right; the next move shows zeros */
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
	int prot = 0, fd;
	bool found = false;
	error_t err;

	pthread_mutex_lock(&f->lock);
	for (m = f->maps; m && !found; m = m->next) {
		uint32_t k;

		if (page < (uintptr_t)m->addr || page >= (uintptr_t)m->addr + m->len)
			continue;
		k = (uint32_t)((page - (uintptr_t)m->addr) / PM_FRAME_SIZE);
		req.segment = m->seg;
		req.slot = m->slot + k;
		prot = m->prot;
		cont = m->cont;
		frame = m->frame + k;
		found = true;
	}
	pthread_mutex_unlock(&f->lock);
	if (!found) {
		fault_zero(f, page);
		return;
	}
	/* The session's frame view usually knows already: the pmd updates
	 * it before it takes the old page away. */
	if (f->local && f->local(f->arg, req.segment, req.slot, cont, frame, &place) &&
	    (place.fd >= 0 || (place.fd = fault_seg_fd(f, place.seg, -1)) >= 0) &&
	    fault_map(f, page, &place, prot, &f->resolved_local) == 0)
		return;
	for (;;) {
		err = fault_call(f, PM_MSG_RESOLVE, &req, sizeof(req), &rep,
				 sizeof(rep), &fd);
		if (err != EBUSY)
			break;
		/* Locked by a server: the owner waits, as its maps do. */
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	if (err) {
		if (err != ENOENT)
			fault_warn(err);
		fault_zero(f, page);
		return;
	}
	place = (struct pmc_place){ .cont = cont, .frame = frame,
				    .seg = rep.segment, .slot = rep.slot,
				    .cow = rep.flags & PM_VIEW_COW,
				    .fd = fault_seg_fd(f, rep.segment, fd) };
	err = place.fd < 0 ? EBADF : fault_map(f, page, &place, prot, &f->resolved);
	if (err) {
		fault_warn(err);
		fault_zero(f, page);
	}
}

static void *follow_main(void *arg)
{
	struct pmc_follow *f = arg;
	struct uffd_msg msgs[16];

	for (;;) {
		struct pollfd p[2] = { { .fd = f->uffd, .events = POLLIN },
				       { .fd = f->stop_fd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		n = read(f->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				follow_fault(f, (uintptr_t)msgs[i].arg.pagefault.address);
	}
	return NULL;
}
