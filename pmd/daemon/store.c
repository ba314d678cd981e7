/*
 * store.c - the backing store's I/O, and the one place where remote
 * reads and writes choose between the fabric and the store.
 *
 * The store is a file (created or extended to --backing-size) or a block
 * device, used as slots of PM_FRAME_SIZE (the core's store.h keeps which
 * are taken). Frames there are remote frames of PMD_NODE_STORE, so every
 * remote path serves them; pmd_rio sends that node's pieces to the file
 * through io_uring (liburing), asynchronously: the loop hears completions
 * on an eventfd and never waits for a page-out or a page-in, so other
 * tasks' requests are not held behind them. Buffered I/O: the kernel's
 * page cache writes back and drops what is paged out.
 *
 * A read the page cache holds is done at once instead (preadv2 with
 * RWF_NOWAIT, which never waits for the device: 1.2 us here against 2 us
 * through the ring and its eventfd); one that would wait goes through the
 * ring. Its join is then told from the loop (pmd_store_reap), never
 * inside pmd_rio, as the ring's completions are.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"

#define STORE_QUEUE 256 /* submissions in flight at most */

struct pmd_storeio {
	int fd;                      /* (C) the file or device */
	int efd;                     /* (C) eventfd of completions */
	struct io_uring ring;        /* (L) */
	uint32_t inflight;           /* (L) operations submitted */
	uint64_t reads, writes;      /* (L) the metrics': frames, */
	uint64_t reads_cached;       /* (L) of the reads, done at once */
	uint64_t errors;             /* (L) operations that failed */
	struct sjoin *ready, **ready_tail; /* (L) joins whose parts all
	                              * ended inside pmd_rio, to be told */
	bool no_nowait;              /* (L) the file refuses RWF_NOWAIT */
};

/* One read or write of pieces, some of them the store's: every part
 * ends, then done is told. */
struct sjoin;
struct sop {
	struct sjoin *j;             /* (C) */
	uint32_t len;                /* (C) bytes it must move */
	uint64_t off;                /* (C) where in the store */
	bool write;                  /* (C) */
};
struct sjoin {
	struct pmd_server *srv;      /* (C) */
	pmd_rio_done *done;          /* (C) */
	void *arg;                   /* (C) */
	bool write;                  /* (C) */
	uint8_t *buf;                /* (C) the bytes, in piece order */
	bool own;                    /* (C) buf is ours to free */
	uint32_t len;                /* (C) */
	uint32_t pending;            /* (L) parts not ended */
	struct sjoin *next;          /* (L) in the store's ready list */
	error_t status;              /* (L) the first failure */
	/* Pieces on other nodes: their bytes apart (fbuf), in order. */
	uint8_t *fbuf;               /* (L) */
	uint32_t nf;                 /* (L) */
	struct { uint32_t off, len; } fpart[PMD_IO_PIECES + PMD_PULL_MAX];
	struct sop ops[];            /* (C) one per piece of the store */
};

static void join_end(struct sjoin *j)
{
	j->done(j->arg, j->status, j->write ? NULL : j->buf, j->len);
	if (j->own)
		free(j->buf);
	free(j->fbuf);
	free(j);
}

static void join_part(struct sjoin *j, error_t status)
{
	if (status && !j->status)
		j->status = status;
	if (!--j->pending)
		join_end(j);
}

/* The pieces on other nodes ended: a read's bytes go in place. */
static void join_fabric(void *arg, error_t status, const uint8_t *data,
			uint32_t len)
{
	struct sjoin *j = arg;
	uint32_t at = 0;

	(void)len;
	for (uint32_t i = 0; !status && !j->write && i < j->nf; i++) {
		memcpy(j->buf + j->fpart[i].off, data + at, j->fpart[i].len);
		at += j->fpart[i].len;
	}
	join_part(j, status);
}

static bool has_store_piece(const struct pmd_io_piece *pieces, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (!pieces[i].local && pieces[i].node == PMD_NODE_STORE)
			return true;
	return false;
}

/* The store's frames that len bytes at off touch (the metrics' count). */
static uint64_t frames_of(uint64_t off, uint32_t len)
{
	return len ? (off + len - 1) / PM_FRAME_SIZE - off / PM_FRAME_SIZE + 1
		   : 0;
}

/* A read of len bytes at off into at, if the page cache holds them all:
 * done now, without waiting for the device. False: it must go through
 * the ring (not all there, or the file cannot say). */
static bool store_read_now(struct pmd_storeio *io, void *at, uint32_t len,
			   uint64_t off)
{
	struct iovec v = { .iov_base = at, .iov_len = len };
	ssize_t n;

	if (io->no_nowait)
		return false;
	n = preadv2(io->fd, &v, 1, (off_t)off, RWF_NOWAIT);
	if (n == (ssize_t)len) {
		uint64_t frames = frames_of(off, len);

		io->reads += frames;
		io->reads_cached += frames;
		return true;
	}
	/* (A file system without the flag; EAGAIN, a short read or any
	 * other error: the ring reads it whole, and reports what fails.) */
	if (n < 0 && (errno == EOPNOTSUPP || errno == EINVAL)) {
		io->no_nowait = true;
		pmd_info("backing store: reads wait in the ring only "
			 "(RWF_NOWAIT: %m)");
	}
	return false;
}

/* A submission slot, submitting what waits when the queue is full. */
static struct io_uring_sqe *store_sqe(struct pmd_storeio *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);

	if (!sqe && io_uring_submit(&io->ring) >= 0)
		sqe = io_uring_get_sqe(&io->ring);
	return sqe;
}

error_t pmd_rio(struct pmd_server *srv, bool write,
		const struct pmd_io_piece *pieces, uint32_t n, const void *data,
		uint32_t len, struct pmd_window *win, pmd_rio_done *done,
		void *arg)
{
	struct pmd_storeio *io = srv->storeio;
	struct pmd_io_piece fpieces[PMD_IO_PIECES + PMD_PULL_MAX];
	uint32_t nstore = 0, off = 0, flen = 0;
	struct sjoin *j;
	error_t err = 0;

	if (!io || !has_store_piece(pieces, n)) {
		if (!srv->cluster)
			return EIO;
		if (win)
			return pmd_cluster_rio_window(srv->cluster, write,
						      pieces, n, win->base,
						      win->mr, len, done, arg,
						      pmd_window_keep, win);
		return pmd_cluster_rio(srv->cluster, write, pieces, n, data,
				       len, done, arg);
	}
	if (n > PMD_IO_PIECES + PMD_PULL_MAX)
		return EMSGSIZE;
	for (uint32_t i = 0; i < n; i++)
		nstore += !pieces[i].local && pieces[i].node == PMD_NODE_STORE;
	j = calloc(1, sizeof(*j) + nstore * sizeof(j->ops[0]));
	if (!j)
		return ENOMEM;
	*j = (struct sjoin){ .srv = srv, .done = done, .arg = arg,
			     .write = write, .len = len, .pending = 1 };
	if (win) {
		j->buf = win->base; /* (the window stays while we run) */
	} else {
		/* A write's bytes are taken now, as the fabric's are. */
		j->buf = malloc(len ? len : 1);
		j->own = true;
		if (!j->buf) {
			free(j);
			return ENOMEM;
		}
		if (write)
			memcpy(j->buf, data, len);
	}
	nstore = 0;
	for (uint32_t i = 0; i < n; i++) {
		const struct pmd_io_piece *p = &pieces[i];
		uint8_t *at = j->buf + off;

		off += p->len;
		if (p->local) { /* copied at once */
			if (write)
				memcpy(p->local, at, p->len);
			else
				memcpy(at, p->local, p->len);
		} else if (p->node == PMD_NODE_STORE) {
			struct io_uring_sqe *sqe;
			struct sop *o;

			if (!write && store_read_now(io, at, p->len,
						     p->base + p->roff))
				continue;
			sqe = store_sqe(io);
			o = &j->ops[nstore++];
			if (!sqe) {
				err = EAGAIN;
				break;
			}
			*o = (struct sop){ .j = j, .len = p->len,
					   .off = p->base + p->roff,
					   .write = write };
			if (write)
				io_uring_prep_write(sqe, io->fd, at, p->len,
						    p->base + p->roff);
			else
				io_uring_prep_read(sqe, io->fd, at, p->len,
						   p->base + p->roff);
			io_uring_sqe_set_data(sqe, o);
			j->pending++;
			io->inflight++;
		} else { /* another node's */
			fpieces[j->nf] = *p;
			j->fpart[j->nf].off = off - p->len;
			j->fpart[j->nf].len = p->len;
			j->nf++;
			flen += p->len;
		}
	}
	if (!err && j->nf) {
		j->fbuf = malloc(flen);
		if (!j->fbuf || !srv->cluster) {
			err = j->fbuf ? EIO : ENOMEM;
		} else {
			uint32_t at = 0;

			for (uint32_t i = 0; write && i < j->nf; i++) {
				memcpy(j->fbuf + at, j->buf + j->fpart[i].off,
				       j->fpart[i].len);
				at += j->fpart[i].len;
			}
			err = pmd_cluster_rio(srv->cluster, write, fpieces,
					      j->nf, j->fbuf, flen, join_fabric,
					      j);
			if (!err)
				j->pending++;
		}
	}
	if (io_uring_sq_ready(&io->ring) && io_uring_submit(&io->ring) < 0 &&
	    !err)
		err = EIO;
	/* What was submitted ends by itself; the rest failed now. The
	 * caller is told only by done (never before this returns). */
	if (err)
		j->status = err;
	if (!err && j->pending == 1) {
		/* Every part ended here: the loop tells done, dropping the
		 * hold of this call. */
		j->next = NULL;
		*io->ready_tail = j;
		io->ready_tail = &j->next;
		return 0;
	}
	j->pending--; /* (the hold of this call) */
	if (!j->pending) { /* nothing went out: fail now, done not run */
		if (j->own)
			free(j->buf);
		free(j->fbuf);
		free(j);
		return err ? err : EIO;
	}
	return 0;
}

void pmd_store_event(struct pmd_server *srv)
{
	struct pmd_storeio *io = srv->storeio;
	uint64_t v;

	if (read(io->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pmd_warn("backing store: reading its eventfd: %m");
	pmd_store_reap(srv);
}

/* The joins pmd_rio ended itself, told now. */
static void store_ready(struct pmd_storeio *io, error_t status)
{
	struct sjoin *j;

	while ((j = io->ready)) {
		io->ready = j->next;
		if (!io->ready)
			io->ready_tail = &io->ready;
		join_part(j, status); /* (may start more: they join the list) */
	}
}

bool pmd_store_pending(const struct pmd_server *srv)
{
	return srv->storeio && srv->storeio->ready;
}

void pmd_store_reap(struct pmd_server *srv)
{
	struct pmd_storeio *io = srv->storeio;
	struct io_uring_cqe *cqe;

	if (!io)
		return;
	store_ready(io, 0);
	if (!io->inflight)
		return;
	while (io_uring_peek_cqe(&io->ring, &cqe) == 0) {
		struct sop *o = io_uring_cqe_get_data(cqe);
		error_t status = 0;

		if (cqe->res < 0 || (uint32_t)cqe->res != o->len) {
			status = EIO;
			io->errors++;
			pmd_warn("backing store: a %s of %u bytes: %s",
				 o->write ? "write" : "read", o->len,
				 cqe->res < 0 ? strerror(-cqe->res)
					      : "short");
		} else if (o->write) {
			io->writes += frames_of(o->off, o->len);
		} else {
			io->reads += frames_of(o->off, o->len);
		}
		io_uring_cqe_seen(&io->ring, cqe);
		io->inflight--;
		join_part(o->j, status);
	}
}

/* The store's size in *bytes: a file's (made size bytes first, when
 * asked), a device's. An error after saying what is wrong. */
static error_t store_size(int fd, const char *path, uint64_t size,
			  uint64_t *bytes)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "pmd: --backing-store %s: %s\n", path,
			strerror(errno));
		return errno;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, bytes) < 0) {
			fprintf(stderr, "pmd: --backing-store %s: its size: "
				"%s\n", path, strerror(errno));
			return errno;
		}
		if (size > *bytes) {
			fprintf(stderr, "pmd: --backing-size: %s holds only "
				"%lu bytes (a device is not extended)\n", path,
				(unsigned long)*bytes);
			return EINVAL;
		}
		if (size)
			*bytes = size;
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "pmd: --backing-store %s: neither a file nor "
			"a block device\n", path);
		return EINVAL;
	}
	if (size && (uint64_t)st.st_size < size &&
	    ftruncate(fd, (off_t)size) < 0) {
		fprintf(stderr, "pmd: --backing-size: extending %s: %s\n",
			path, strerror(errno));
		return errno;
	}
	*bytes = size ? size : (uint64_t)st.st_size;
	return 0;
}

error_t pmd_store_open(struct pmd_server *srv)
{
	const char *path = srv->cfg->backing_store;
	uint64_t size = srv->cfg->backing_size, bytes, nslots;
	struct epoll_event ev = { .events = EPOLLIN,
				  .data.ptr = &srv->store_tag };
	struct pmd_storeio *io;
	error_t err;

	if (!path[0])
		return 0;
	io = calloc(1, sizeof(*io));
	if (!io)
		return ENOMEM;
	io->efd = -1;
	io->ready_tail = &io->ready;
	/* (Created only when a size is given; never readable by others:
	 * it holds tasks' frames.) */
	io->fd = open(path, O_RDWR | O_CLOEXEC | (size ? O_CREAT : 0), 0600);
	if (io->fd < 0) {
		err = errno;
		fprintf(stderr, "pmd: --backing-store %s: %s%s\n", path,
			strerror(err), err == ENOENT
			? " (--backing-size SIZE creates it)" : "");
		free(io);
		return err;
	}
	err = store_size(io->fd, path, size, &bytes);
	nslots = err ? 0 : bytes / PM_FRAME_SIZE;
	if (!nslots) {
		if (!err)
			fprintf(stderr, "pmd: --backing-store %s: smaller than "
				"one frame (%u bytes)\n", path, PM_FRAME_SIZE);
		close(io->fd);
		free(io);
		return err ? err : EINVAL;
	}
	err = -io_uring_queue_init(STORE_QUEUE, &io->ring, 0);
	if (err) {
		fprintf(stderr, "pmd: --backing-store: io_uring: %s\n",
			strerror(err));
		close(io->fd);
		free(io);
		return err;
	}
	io->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (io->efd < 0 || io_uring_register_eventfd(&io->ring, io->efd) < 0 ||
	    epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, io->efd, &ev) < 0 ||
	    pmd_store_init(&srv->core->store, nslots)) {
		err = errno ? errno : ENOMEM;
		fprintf(stderr, "pmd: --backing-store: %s\n", strerror(err));
		if (io->efd >= 0)
			close(io->efd);
		io_uring_queue_exit(&io->ring);
		close(io->fd);
		free(io);
		return err;
	}
	srv->core->budget.store = nslots - srv->core->store.reserve;
	srv->storeio = io;
	pmd_info("backing store %s: %lu frames", path, (unsigned long)nslots);
	return 0;
}

void pmd_store_close(struct pmd_server *srv)
{
	struct pmd_storeio *io = srv->storeio;

	if (!io)
		return;
	store_ready(io, EIO);
	/* What is in flight ends first (its contexts go with it). */
	while (io->inflight) {
		struct io_uring_cqe *cqe;

		struct sop *o;

		if (io_uring_wait_cqe(&io->ring, &cqe) < 0)
			break;
		o = io_uring_cqe_get_data(cqe);
		io_uring_cqe_seen(&io->ring, cqe);
		io->inflight--;
		join_part(o->j, EIO);
	}
	io_uring_queue_exit(&io->ring);
	close(io->efd);
	close(io->fd);
	free(io);
	srv->storeio = NULL;
}

error_t pmd_store_zero(struct pmd_server *srv, const struct pmd_place *p,
		       uint32_t n)
{
	const struct pmd_storeio *io = srv->storeio;
	uint32_t i = 0;

	if (!io)
		return ENODEV;
	while (i < n) {
		uint64_t first = (uint64_t)p[i].seg * PMD_SEG_SLOTS + p[i].slot;
		uint32_t k = 1;
		off_t off, len;

		while (i + k < n && (uint64_t)p[i + k].seg * PMD_SEG_SLOTS +
					    p[i + k].slot == first + k)
			k++;
		off = (off_t)(first * PM_FRAME_SIZE);
		len = (off_t)k * PM_FRAME_SIZE;
		/* A hole where the file system can punch one (tmpfs can
		 * only that); a zeroed range elsewhere (a device). */
		if (fallocate(io->fd, FALLOC_FL_PUNCH_HOLE |
				      FALLOC_FL_KEEP_SIZE, off, len) < 0 &&
		    (errno != EOPNOTSUPP ||
		     fallocate(io->fd, FALLOC_FL_ZERO_RANGE |
				       FALLOC_FL_KEEP_SIZE, off, len) < 0)) {
			error_t err = errno;

			pmd_warn("the backing store: zeroing %u frame(s) at "
				 "frame %lu: %s; no new frames go there",
				 k, (unsigned long)first, strerror(err));
			return err;
		}
		i += k;
	}
	return 0;
}

void pmd_store_counts(const struct pmd_server *srv,
		      struct pmd_store_counts *out)
{
	const struct pmd_storeio *io = srv->storeio;

	*out = (struct pmd_store_counts){ 0 };
	if (io)
		*out = (struct pmd_store_counts){ .reads = io->reads,
			.reads_cached = io->reads_cached,
			.writes = io->writes, .errors = io->errors };
}
