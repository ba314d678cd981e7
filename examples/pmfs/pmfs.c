/*
 * pmfs.c - the pmfs mount: a FUSE file system (libfuse3, low-level API)
 * over a pmfsd server, with file data in this mount's own pmd containers.
 *
 *   pmfs --socket PMD_SOCKET --server HOST:PORT MOUNTPOINT [-f] [-o OPTS]
 *
 * Each file this mount has touched gets a container of this mount's task,
 * homed on this node, holding the frames it read or wrote, at the file's
 * frame numbers. A read maps the frames it needs (the fast path: no message
 * to the pmd when they are resident) and answers from the mapping; a frame
 * not held yet is fetched first: this mount shares the container with the
 * server, the server copies the file's frames into it, and the mount
 * unshares. A write goes into the container through a mapping and marks
 * its frames dirty; close, fsync and copy_file_range write them back the
 * same way round (the server copies them out of the shared container).
 * No file byte goes through the control connection.
 *
 * What it promises (close-to-open, like NFS): when a file is closed on one
 * mount and then opened on another, the second sees every byte the first
 * wrote. An open that finds the file's version changed drops what the mount
 * held of it (and the kernel's page cache); until then a mount may keep
 * serving what it fetched. Writes go back in whole frames: two mounts that
 * write the same 4 KiB frame of a file between their opens and closes do
 * not merge, the last to close wins that frame. A file grows to the largest
 * size written back; truncation goes to the server at once.
 *
 * When the server is gone, what this mount holds is still served (open
 * files, names it looked up); anything else answers EIO, as do writes
 * back. Lock key: (T) the table lock, (N) the node's lock, (S) the server
 * lock, (C) constant after start; the order is T, then N, then S.
 */
#define FUSE_USE_VERSION 34
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "proto.h"

#define FRAME PM_FRAME_SIZE
#define READAHEAD_FRAMES 256       /* what a read fetches beyond its need */
#define XATTR_NODE "user.pmfs.node"
#define XATTR_INFO "user.pmfs.info"

/* What this mount knows and holds of one file. */
struct cnode {
	uint64_t ino;            /* (C) the server's */
	uint64_t nlookup;        /* (T) the kernel's references */
	struct cnode *hnext;     /* (T) */
	pthread_mutex_t lock;
	uint32_t opens;          /* (N) */
	bool known;              /* (N) attr has been had */
	struct pmfs_attr attr;   /* (N) as the server last said */
	container_t cont;        /* (N) 0: none yet */
	uint64_t *alloc;         /* (N) frames allocated in cont */
	uint64_t *have;          /* (N) of which held (valid) */
	uint64_t *dirty;         /* (N) of which not written back */
	size_t nwords;           /* (N) of the three bitmaps */
	uint64_t ndirty;         /* (N) */
	uint64_t size;           /* (N) this mount's view */
	uint64_t srv_size;       /* (N) the server's, last seen */
	uint64_t version;        /* (N) of the frames held; 0: none */
	struct window {          /* (N) a mapping kept for next requests */
		char *addr;      /* NULL: none */
		uint64_t s, e;   /* its frames, all allocated */
	} *wins;                 /* (N) two a chunk: read-only, writable */
	size_t nwins;            /* (N) */
};

/* (parent, name) -> inode: what this mount looked up, to go on serving
 * what it holds when the server is gone. */
struct cname {
	uint64_t parent, ino;
	struct cname *hnext;
	char name[];
};

static struct {
	pm_t *pm;                /* (C) */
	pm_task_t server_task;   /* (C) */
	uint64_t generation;     /* (C) */
	pthread_mutex_t tlock;
	struct cnode **tab;      /* (T) */
	size_t tsize, tcount;    /* (T) */
	struct cname **names;    /* (T) */
	size_t nsize;            /* (C) */
	size_t ncount;           /* (T) names kept, <= NAMES_MAX */
	pthread_mutex_t slock;
	int fd;                  /* (S) -1: the server is gone */
	uint32_t seq;            /* (S) */
} M;

/* A thread's message buffers, one each way (freed when it ends: the
 * loop ends idle threads). */
struct tbufs {
	uint8_t req[PMFS_MSG_MAX];
	uint8_t rep[PMFS_MSG_MAX];
};
static pthread_key_t tbufs_key; /* (C) */

static struct tbufs *tbufs(void)
{
	struct tbufs *t = pthread_getspecific(tbufs_key);

	if (!t && (t = malloc(sizeof(*t))) && pthread_setspecific(tbufs_key, t)) {
		free(t);
		t = NULL;
	}
	return t;
}

const char *pmfs_prog = "pmfs";

/* ---- the server ---- */

/* One request and its reply; rep reads the reply's payload. EIO when the
 * server is gone (and from then on). */
static error_t srv_call(uint16_t op, const struct pmfs_buf *req,
			struct pmfs_buf *rep)
{
	struct tbufs *t = tbufs();
	struct pmfs_hdr h;
	error_t err;

	if (!t)
		return ENOMEM;
	if (req->bad)
		return ENAMETOOLONG;
	pthread_mutex_lock(&M.slock);
	if (M.fd < 0) {
		pthread_mutex_unlock(&M.slock);
		return EIO;
	}
	uint32_t seq = ++M.seq;
	err = pmfs_send(M.fd, op, seq, 0, req->p, (uint32_t)req->len);
	if (!err)
		err = pmfs_recv(M.fd, &h, t->rep, PMFS_MSG_MAX);
	if (!err && (h.op != op || h.seq != seq))
		err = EPROTO;
	if (err) {
		pmfs_say("the server's connection: %s: serving what this mount "
		    "holds, EIO for the rest", strerror(err));
		close(M.fd);
		M.fd = -1;
		pthread_mutex_unlock(&M.slock);
		return EIO;
	}
	pthread_mutex_unlock(&M.slock);
	pmfs_buf_reader(rep, t->rep, h.len);
	if (h.status)
		return h.status > 0 && h.status < 4096 ? h.status : EIO;
	return 0;
}

/* A request to build in this thread's buffer (none to be had: srv_call
 * answers ENOMEM). */
static void req_init(struct pmfs_buf *b)
{
	struct tbufs *t = tbufs();

	pmfs_buf_init(b, t ? t->req : NULL, t ? PMFS_MSG_MAX : 0);
}

/* ---- the tables ---- */

/* Must hold T. */
static struct cnode *cnode_find_locked(uint64_t ino)
{
	struct cnode *n = M.tab[pmfs_hash_ino(ino, M.tsize)];

	while (n && n->ino != ino)
		n = n->hnext;
	return n;
}

static struct cnode *cnode_find(uint64_t ino)
{
	struct cnode *n;

	pthread_mutex_lock(&M.tlock);
	n = cnode_find_locked(ino);
	pthread_mutex_unlock(&M.tlock);
	return n;
}

/* The node of ino, made if new, with one more kernel reference when ref. */
static struct cnode *cnode_get(uint64_t ino, bool ref)
{
	struct cnode *n;

	pthread_mutex_lock(&M.tlock);
	n = cnode_find_locked(ino);
	if (!n && (n = calloc(1, sizeof(*n)))) {
		if (M.tcount * 2 >= M.tsize) {
			size_t sz = M.tsize * 2;
			struct cnode **t = calloc(sz, sizeof(*t));

			if (t) {
				for (size_t k = 0; k < M.tsize; k++)
					for (struct cnode *x = M.tab[k], *nx; x; x = nx) {
						nx = x->hnext;
						x->hnext = t[pmfs_hash_ino(x->ino, sz)];
						t[pmfs_hash_ino(x->ino, sz)] = x;
					}
				free(M.tab);
				M.tab = t;
				M.tsize = sz;
			}
		}
		n->ino = ino;
		pthread_mutex_init(&n->lock, NULL);
		n->hnext = M.tab[pmfs_hash_ino(ino, M.tsize)];
		M.tab[pmfs_hash_ino(ino, M.tsize)] = n;
		M.tcount++;
	}
	if (n && ref)
		n->nlookup++;
	pthread_mutex_unlock(&M.tlock);
	return n;
}

/* The names kept are a fallback (served only when the server is gone):
 * past this many they are all forgotten and learnt again. */
#define NAMES_MAX (256 * 1024)

/* Must hold T. */
static void names_clear(void)
{
	for (size_t k = 0; k < M.nsize; k++)
		for (struct cname *c = M.names[k], *nx; c; c = nx) {
			nx = c->hnext;
			free(c);
		}
	memset(M.names, 0, M.nsize * sizeof(*M.names));
	M.ncount = 0;
}

static void name_remember(uint64_t parent, const char *name, uint64_t ino)
{
	size_t h = pmfs_hash_name(parent, name, M.nsize);
	struct cname *c;

	pthread_mutex_lock(&M.tlock);
	if (M.ncount >= NAMES_MAX)
		names_clear();
	for (c = M.names[h]; c; c = c->hnext)
		if (c->parent == parent && !strcmp(c->name, name))
			break;
	if (c) {
		c->ino = ino;
	} else if ((c = malloc(sizeof(*c) + strlen(name) + 1))) {
		c->parent = parent;
		c->ino = ino;
		strcpy(c->name, name);
		c->hnext = M.names[h];
		M.names[h] = c;
		M.ncount++;
	}
	pthread_mutex_unlock(&M.tlock);
}

static void name_forget(uint64_t parent, const char *name)
{
	struct cname **pp = &M.names[pmfs_hash_name(parent, name, M.nsize)], *c;

	pthread_mutex_lock(&M.tlock);
	for (; (c = *pp); pp = &c->hnext)
		if (c->parent == parent && !strcmp(c->name, name)) {
			*pp = c->hnext;
			free(c);
			M.ncount--;
			break;
		}
	pthread_mutex_unlock(&M.tlock);
}

static uint64_t name_find(uint64_t parent, const char *name)
{
	uint64_t ino = 0;

	pthread_mutex_lock(&M.tlock);
	for (struct cname *c = M.names[pmfs_hash_name(parent, name, M.nsize)]; c;
	     c = c->hnext)
		if (c->parent == parent && !strcmp(c->name, name))
			ino = c->ino;
	pthread_mutex_unlock(&M.tlock);
	return ino;
}

/* ---- bitmaps of frames ---- */

static bool bit(const uint64_t *m, size_t nwords, uint64_t f)
{
	return f / 64 < nwords && (m[f / 64] >> (f % 64) & 1);
}

/* Must hold N. Room for frames below end in the three bitmaps. */
static error_t bits_room(struct cnode *n, uint64_t end)
{
	uint64_t **maps[3] = { &n->alloc, &n->have, &n->dirty };
	size_t w = (size_t)((end + 63) / 64), old = n->nwords;

	if (w <= old)
		return 0;
	if (w < old * 2)
		w = old * 2;
	for (int k = 0; k < 3; k++) {
		uint64_t *m = realloc(*maps[k], w * 8);

		if (!m)
			return ENOMEM;   /* (nwords is still right) */
		memset(m + old, 0, (w - old) * 8);
		*maps[k] = m;
	}
	n->nwords = w;
	return 0;
}

static void bits_set(uint64_t *m, uint64_t s, uint64_t e, bool v)
{
	for (uint64_t f = s; f < e; f++) {
		if (v)
			m[f / 64] |= 1ull << (f % 64);
		else
			m[f / 64] &= ~(1ull << (f % 64));
	}
}

/* ---- what the mount holds ---- */

#define WINDOW_FRAMES 256   /* a window starts within one such chunk */

static void window_unmap(struct window *w)
{
	if (w->addr)
		pm_container_unmap(M.pm, w->addr, (int)(w->e - w->s));
	w->addr = NULL;
}

/* Must hold N. The windows of frames [s, e) are unmapped (before the
 * frames are given back). */
static void windows_unmap(struct cnode *n, uint64_t s, uint64_t e)
{
	for (size_t k = 0; k < n->nwins; k++)
		if (n->wins[k].addr && n->wins[k].s < e && s < n->wins[k].e)
			window_unmap(&n->wins[k]);
}

/* Must hold N. The address of frames [s, e) (all allocated), mapped
 * read-only or writable (copy-on-write broken), from a window of the
 * node's when one covers them, else from a new one: the run of allocated
 * frames around them within s's chunk (a request spanning chunks gets a
 * window of its own, kept in its first chunk's place). Requests then cost
 * no mapping call while they stay in windows (a mapping follows its
 * frames wherever the pmd moves them, and sees what the server copies
 * into them). */
static error_t cache_map(struct cnode *n, uint64_t s, uint64_t e, bool write,
			 char **addr_out)
{
	uint64_t chunk = s / WINDOW_FRAMES * WINDOW_FRAMES, a = s, b = e;
	size_t k = (size_t)(s / WINDOW_FRAMES) * 2 + write;
	struct window *w;
	void *addr;
	error_t err;

	if (k >= n->nwins) {
		size_t nw = k + 1 > n->nwins * 2 ? k + 1 : n->nwins * 2;
		struct window *v = realloc(n->wins, nw * sizeof(*v));

		if (!v)
			return ENOMEM;
		memset(v + n->nwins, 0, (nw - n->nwins) * sizeof(*v));
		n->wins = v;
		n->nwins = nw;
	}
	w = &n->wins[k];
	if (w->addr && w->s <= s && e <= w->e) {
		*addr_out = w->addr + (s - w->s) * FRAME;
		return 0;
	}
	window_unmap(w);
	while (a > chunk && bit(n->alloc, n->nwords, a - 1))
		a--;
	while (b < chunk + WINDOW_FRAMES && bit(n->alloc, n->nwords, b))
		b++;
	err = pm_container_map(M.pm, n->cont, a, (int)(b - a),
			       write ? CONT_MAP_READ | CONT_MAP_WRITE |
					       CONT_MAP_FORCE_WRITE
				     : CONT_MAP_READ,
			       &addr, NULL);
	if (err)
		return err;
	*w = (struct window){ .addr = addr, .s = a, .e = b };
	*addr_out = w->addr + (s - a) * FRAME;
	return 0;
}

/* Must hold N. The frames of [s, e) allocated here are given back (dirty
 * ones too: the caller has decided they are to go). */
static void cache_drop(struct cnode *n, uint64_t s, uint64_t e)
{
	uint64_t f = s;

	if (e > (uint64_t)n->nwords * 64)
		e = (uint64_t)n->nwords * 64;
	/* (no window may cover a frame given back) */
	windows_unmap(n, s, e);
	while (f < e) {
		uint64_t r;

		if (!bit(n->alloc, n->nwords, f)) {
			f++;
			continue;
		}
		for (r = f; r < e && bit(n->alloc, n->nwords, r); r++)
			if (bit(n->dirty, n->nwords, r))
				n->ndirty--;
		pm_container_deallocate(M.pm, n->cont, f, (int)(r - f));
		bits_set(n->alloc, f, r, false);
		bits_set(n->have, f, r, false);
		bits_set(n->dirty, f, r, false);
		f = r;
	}
}

/* Must hold N. The frames held that are not dirty are held no more (the
 * file changed elsewhere); they stay allocated, for what is fetched next. */
static void cache_forget_clean(struct cnode *n)
{
	for (size_t w = 0; w < n->nwords; w++)
		n->have[w] &= n->dirty[w];
}

/* Must hold N. Every frame allocated but not dirty is given back (room
 * for other files). */
static void cache_drop_unused(struct cnode *n)
{
	uint64_t f = 0, end = (uint64_t)n->nwords * 64;

	while (f < end) {
		uint64_t r;

		if (!bit(n->alloc, n->nwords, f) || bit(n->dirty, n->nwords, f)) {
			f++;
			continue;
		}
		for (r = f; r < end && bit(n->alloc, n->nwords, r) &&
			    !bit(n->dirty, n->nwords, r); r++)
			;
		cache_drop(n, f, r);
		f = r;
	}
}

/* Must hold N. What the server says of the file: its size, and whether the
 * frames held are still its (expected: the version they would have if
 * nobody else changed the file since). */
static void cache_learn(struct cnode *n, const struct pmfs_attr *a,
			uint64_t expected)
{
	n->attr = *a;
	n->known = true;
	n->srv_size = a->size;
	if (!n->ndirty || n->size < a->size)
		n->size = a->size;
	if (n->version != a->version) {
		if (a->version != expected)
			cache_forget_clean(n);
		n->version = a->version;
	}
}

/* Other files' clean frames go, to make room (files open are left).
 * Must hold self's lock; the table's is only tried (the lock order is
 * table, then node). */
static void cache_evict_others(struct cnode *self)
{
	if (pthread_mutex_trylock(&M.tlock))
		return;
	for (size_t k = 0; k < M.tsize; k++)
		for (struct cnode *x = M.tab[k]; x; x = x->hnext) {
			if (x == self || pthread_mutex_trylock(&x->lock))
				continue;
			if (!x->opens)
				cache_drop_unused(x);
			pthread_mutex_unlock(&x->lock);
		}
	pthread_mutex_unlock(&M.tlock);
}

/* Containers of other files that hold nothing to write back go, to make
 * room in this task's handles (the pmd's limit a task: a container each
 * file this mount touched). Must hold self's lock; as above. */
static void cache_evict_containers(struct cnode *self)
{
	if (pthread_mutex_trylock(&M.tlock))
		return;
	for (size_t k = 0; k < M.tsize; k++)
		for (struct cnode *x = M.tab[k]; x; x = x->hnext) {
			if (x == self || !x->cont ||
			    pthread_mutex_trylock(&x->lock))
				continue;
			if (!x->opens && !x->ndirty) {
				cache_drop(x, 0, (uint64_t)x->nwords * 64);
				pm_container_destroy(M.pm, x->cont);
				x->cont = 0;
			}
			pthread_mutex_unlock(&x->lock);
		}
	pthread_mutex_unlock(&M.tlock);
}

static error_t alloc_run(struct cnode *n, uint64_t s, uint64_t e)
{
	int count = (int)(e - s);
	error_t err = pm_container_allocate(M.pm, n->cont, s, &count, 0);

	if (err == ENOMEM) {
		cache_evict_others(n);
		count = (int)(e - s);
		err = pm_container_allocate(M.pm, n->cont, s, &count, 0);
	}
	if (err)
		return err == ENOMEM ? ENOSPC : EIO;
	bits_set(n->alloc, s, e, true);
	return 0;
}

/* Must hold N. The frames of [s, e) not allocated yet are, in the
 * container (made on first need); they read zeros and are not held until
 * fetched or written. When this task's frames run out, other files' clean
 * frames make room. */
static error_t cache_alloc(struct cnode *n, uint64_t s, uint64_t e)
{
	uint64_t f = s;
	error_t err;

	if ((err = bits_room(n, e)))
		return err;
	if (!n->cont && (err = pm_container_create(M.pm, &n->cont)) == ENOMEM) {
		cache_evict_containers(n);
		err = pm_container_create(M.pm, &n->cont);
	}
	if (err)
		return err == ENOMEM ? ENOSPC : EIO;
	while (f < e) {
		uint64_t r;

		if (bit(n->alloc, n->nwords, f)) {
			f++;
			continue;
		}
		for (r = f; r < e && !bit(n->alloc, n->nwords, r); r++)
			;
		if ((err = alloc_run(n, f, r)))
			return err;
		f = r;
	}
	return 0;
}

/* Must hold N. A token for a share of the container with the server; the
 * share is given back by cache_unshare. */
static error_t cache_share(struct cnode *n, pm_cap_token_t *tok,
			   container_t *weak)
{
	error_t err = pm_container_share(M.pm, n->cont, M.server_task, weak);

	if (err == ENOMEM) { /* (the share is a handle too) */
		cache_evict_containers(n);
		err = pm_container_share(M.pm, n->cont, M.server_task, weak);
	}
	if (!err && (err = pm_cap_export(M.pm, *weak, tok))) {
		pm_container_unshare(M.pm, n->cont, M.server_task);
		pm_cap_release(M.pm, *weak);
	}
	return err ? EIO : 0;
}

static void cache_unshare(struct cnode *n, container_t weak)
{
	pm_container_unshare(M.pm, n->cont, M.server_task);
	pm_cap_release(M.pm, weak);
}

/* Must hold N. Frames [s, e), none held, all below the server's size,
 * fetched: allocated here, shared, copied in by the server, unshared. */
static error_t cache_fetch(struct cnode *n, uint64_t s, uint64_t e)
{
	struct pmfs_buf req, rep;
	struct pmfs_attr a;
	pm_cap_token_t tok;
	container_t weak;
	error_t err;

	if ((err = cache_alloc(n, s, e)) || (err = cache_share(n, &tok, &weak)))
		return err;
	req_init(&req);
	pmfs_put_u64(&req, n->ino);
	pmfs_put_u64(&req, s);
	pmfs_put_u32(&req, (uint32_t)(e - s));
	pmfs_put_bytes(&req, tok.bytes, sizeof(tok.bytes));
	err = srv_call(PMFS_FETCH, &req, &rep);
	cache_unshare(n, weak);
	if (err)
		return err;
	pmfs_get_attr(&rep, &a);
	/* The frames just fetched are the new version's, whatever it is. */
	cache_learn(n, &a, n->version);
	bits_set(n->have, s, e, true);
	return 0;
}

/* Must hold N. Frames [s, e) hold what this mount wrote: held, and dirty
 * until written back. */
static void cache_written(struct cnode *n, uint64_t s, uint64_t e)
{
	for (uint64_t f = s; f < e; f++)
		if (!bit(n->dirty, n->nwords, f))
			n->ndirty++;
	bits_set(n->have, s, e, true);
	bits_set(n->dirty, s, e, true);
}

/* Must hold N. Frames [s, e) held: fetched, or (past the server's size:
 * this mount's own growth) made zeros and dirty; with readahead, a fetch
 * goes on past e, up to READAHEAD_FRAMES, while frames are missing. */
static error_t cache_need(struct cnode *n, uint64_t s, uint64_t e,
			  bool readahead)
{
	uint64_t srv_frames = pmfs_frames(n->srv_size), f = s;
	error_t err;

	if ((err = bits_room(n, e)))
		return err;
	while (f < e) {
		uint64_t r;

		if (bit(n->have, n->nwords, f)) {
			f++;
			continue;
		}
		if (f >= srv_frames) {
			char *addr;

			/* This mount's own growth: zeros, to be written. */
			for (r = f; r < e && !bit(n->have, n->nwords, r); r++)
				;
			if ((err = cache_alloc(n, f, r)) ||
			    (err = cache_map(n, f, r, true, &addr)))
				return err;
			memset(addr, 0, (r - f) * FRAME);
			cache_written(n, f, r);
			f = r;
			continue;
		}
		for (r = f; r < e && r < srv_frames && !bit(n->have, n->nwords, r);
		     r++)
			;
		if (readahead && r == e) {
			uint64_t lim = e + READAHEAD_FRAMES;

			if (lim > srv_frames)
				lim = srv_frames;
			if ((err = bits_room(n, lim)))
				return err;
			while (r < lim && !bit(n->have, n->nwords, r))
				r++;
		}
		while (f < r) {
			uint64_t c = r - f < PMFS_FETCH_MAX ? r - f : PMFS_FETCH_MAX;

			if ((err = cache_fetch(n, f, f + c)))
				return err;
			f += c;
		}
	}
	return 0;
}

/* Must hold N. The dirty frames go back to the server (close, fsync, a
 * copy): shared, copied out by the server, unshared. */
static error_t cache_commit(struct cnode *n)
{
	struct pmfs_buf req, rep;
	struct pmfs_attr a = { 0 };
	pm_cap_token_t tok;
	container_t weak;
	uint64_t f = 0, end = (uint64_t)n->nwords * 64, before = n->version;
	uint64_t calls = 0;
	error_t err = 0;

	if (!n->ndirty)
		return 0;
	if ((err = cache_share(n, &tok, &weak)))
		return err;
	while (f < end && !err) {
		size_t count_at;
		uint32_t nr = 0;

		req_init(&req);
		pmfs_put_u64(&req, n->ino);
		pmfs_put_u64(&req, n->size);
		pmfs_put_bytes(&req, tok.bytes, sizeof(tok.bytes));
		count_at = req.len;
		pmfs_put_u32(&req, 0);
		for (; f < end && nr < PMFS_RANGES_MAX; ) {
			uint64_t r;

			if (!bit(n->dirty, n->nwords, f)) {
				f++;
				continue;
			}
			for (r = f; r < end && r - f < PMFS_FETCH_MAX &&
				    bit(n->dirty, n->nwords, r); r++)
				;
			pmfs_put_u64(&req, f);
			pmfs_put_u32(&req, (uint32_t)(r - f));
			nr++;
			f = r;
		}
		if (!nr)
			break;
		memcpy(req.p + count_at, &nr, 4);
		err = srv_call(PMFS_COMMIT, &req, &rep);
		if (!err) {
			pmfs_get_attr(&rep, &a);
			calls++;
		}
	}
	cache_unshare(n, weak);
	if (err)
		return err;
	memset(n->dirty, 0, n->nwords * 8);
	n->ndirty = 0;
	if (calls)
		cache_learn(n, &a, before + calls);
	return 0;
}

/* ---- FUSE operations ---- */

static void stat_of(const struct pmfs_attr *a, uint64_t size, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = (off_t)size;
	st->st_blksize = FRAME;
	st->st_blocks = (blkcnt_t)(pmfs_frames(size) * (FRAME / 512));
	st->st_atim.tv_sec = a->atime;
	st->st_atim.tv_nsec = a->atime_ns;
	st->st_mtim.tv_sec = a->mtime;
	st->st_mtim.tv_nsec = a->mtime_ns;
	st->st_ctim.tv_sec = a->ctime;
	st->st_ctim.tv_nsec = a->ctime_ns;
}

/* Must hold N. */
static void stat_of_node(const struct cnode *n, struct stat *st)
{
	stat_of(&n->attr, S_ISREG(n->attr.mode) ? n->size : n->attr.size, st);
}

/* An entry for the kernel (with one reference more on the node). */
static void reply_entry(fuse_req_t req, uint64_t parent, const char *name,
			const struct pmfs_attr *a)
{
	struct fuse_entry_param e = { .ino = a->ino,
				      .generation = M.generation };
	struct cnode *n = cnode_get(a->ino, true);

	if (!n) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&n->lock);
	cache_learn(n, a, n->version);
	stat_of_node(n, &e.attr);
	pthread_mutex_unlock(&n->lock);
	name_remember(parent, name, a->ino);
	fuse_reply_entry(req, &e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct pmfs_buf b, rep;
	struct pmfs_attr a;
	error_t err;

	req_init(&b);
	pmfs_put_u64(&b, parent);
	pmfs_put_str(&b, name, strlen(name));
	err = srv_call(PMFS_LOOKUP, &b, &rep);
	if (!err) {
		pmfs_get_attr(&rep, &a);
		reply_entry(req, parent, name, &a);
		return;
	}
	if (err == ENOENT)
		name_forget(parent, name);
	if (err == EIO) {
		/* The server is gone: a name looked up before, of a node held. */
		uint64_t ino = name_find(parent, name);
		struct cnode *n = ino ? cnode_get(ino, false) : NULL;

		if (n && n->known) {
			struct fuse_entry_param e = { .ino = ino,
						      .generation = M.generation };

			pthread_mutex_lock(&n->lock);
			stat_of_node(n, &e.attr);
			pthread_mutex_unlock(&n->lock);
			cnode_get(ino, true);
			fuse_reply_entry(req, &e);
			return;
		}
	}
	fuse_reply_err(req, err);
}

static void cnode_free(struct cnode *n)
{
	struct cnode **pp = &M.tab[pmfs_hash_ino(n->ino, M.tsize)];

	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	M.tcount--;
	windows_unmap(n, 0, UINT64_MAX);
	free(n->wins);
	if (n->cont)
		pm_container_destroy(M.pm, n->cont);
	free(n->alloc);
	free(n->have);
	free(n->dirty);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

static void forget_one(fuse_ino_t ino, uint64_t nlookup)
{
	struct cnode *n;

	pthread_mutex_lock(&M.tlock);
	n = cnode_find_locked(ino);
	if (n && ino != FUSE_ROOT_ID) {
		bool idle;

		n->nlookup -= nlookup < n->nlookup ? nlookup : n->nlookup;
		/* (the kernel holds a reference while a file is open: no
		 * request of this node runs once it has none) */
		pthread_mutex_lock(&n->lock);
		idle = !n->nlookup && !n->opens && !n->ndirty;
		pthread_mutex_unlock(&n->lock);
		if (idle)
			cnode_free(n);
	}
	pthread_mutex_unlock(&M.tlock);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	for (size_t k = 0; k < count; k++)
		forget_one(forgets[k].ino, forgets[k].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cnode *n = cnode_get(ino, false);
	struct pmfs_buf b, rep;
	struct pmfs_attr a;
	struct stat st;
	error_t err;

	if (!n) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* A file open here: its attributes as this mount sees it (the
	 * kernel asks before reads and writes; close-to-open asks the
	 * server only at open). */
	pthread_mutex_lock(&n->lock);
	if (n->opens && n->known && S_ISREG(n->attr.mode)) {
		stat_of_node(n, &st);
		pthread_mutex_unlock(&n->lock);
		fuse_reply_attr(req, &st, 0);
		return;
	}
	pthread_mutex_unlock(&n->lock);
	req_init(&b);
	pmfs_put_u64(&b, ino);
	err = srv_call(PMFS_GETATTR, &b, &rep);
	pthread_mutex_lock(&n->lock);
	if (!err) {
		pmfs_get_attr(&rep, &a);
		/* (the frames held are judged at the next open) */
		n->attr = a;
		n->known = true;
		n->srv_size = a.size;
		if (!n->ndirty)
			n->size = a.size;
	}
	if (!err || (err == EIO && n->known)) {
		stat_of_node(n, &st);
		pthread_mutex_unlock(&n->lock);
		fuse_reply_attr(req, &st, 0);
		return;
	}
	pthread_mutex_unlock(&n->lock);
	fuse_reply_err(req, err);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct cnode *n = cnode_get(ino, false);
	struct pmfs_buf b, rep;
	struct pmfs_attr a;
	struct stat st;
	uint32_t valid = 0;
	error_t err;

	if (!n) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (to_set & FUSE_SET_ATTR_MODE) valid |= PMFS_SET_MODE;
	if (to_set & FUSE_SET_ATTR_UID) valid |= PMFS_SET_UID;
	if (to_set & FUSE_SET_ATTR_GID) valid |= PMFS_SET_GID;
	if (to_set & FUSE_SET_ATTR_SIZE) valid |= PMFS_SET_SIZE;
	if (to_set & FUSE_SET_ATTR_ATIME) valid |= PMFS_SET_ATIME;
	if (to_set & FUSE_SET_ATTR_MTIME) valid |= PMFS_SET_MTIME;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW) valid |= PMFS_SET_ATIME_NOW;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW) valid |= PMFS_SET_MTIME_NOW;
	pthread_mutex_lock(&n->lock);
	req_init(&b);
	pmfs_put_u64(&b, ino);
	pmfs_put_u32(&b, valid);
	pmfs_put_u32(&b, attr->st_mode & 07777);
	pmfs_put_u32(&b, attr->st_uid);
	pmfs_put_u32(&b, attr->st_gid);
	pmfs_put_u64(&b, (uint64_t)attr->st_size);
	pmfs_put_u64(&b, (uint64_t)attr->st_atim.tv_sec);
	pmfs_put_u32(&b, (uint32_t)attr->st_atim.tv_nsec);
	pmfs_put_u64(&b, (uint64_t)attr->st_mtim.tv_sec);
	pmfs_put_u32(&b, (uint32_t)attr->st_mtim.tv_nsec);
	err = srv_call(PMFS_SETATTR, &b, &rep);
	if (err) {
		pthread_mutex_unlock(&n->lock);
		fuse_reply_err(req, err);
		return;
	}
	pmfs_get_attr(&rep, &a);
	if (valid & PMFS_SET_SIZE) {
		uint64_t size = (uint64_t)attr->st_size;
		uint64_t before = n->version;

		/* What this mount holds past the new end goes; the bytes
		 * past it in its last frame read zeros, as on the server. */
		cache_drop(n, pmfs_frames(size), (uint64_t)n->nwords * 64);
		if (size % FRAME && bit(n->have, n->nwords, size / FRAME)) {
			void *addr;

			if (!pm_container_map(M.pm, n->cont, size / FRAME, 1,
					      CONT_MAP_READ | CONT_MAP_WRITE |
						      CONT_MAP_FORCE_WRITE,
					      &addr, NULL)) {
				memset((char *)addr + size % FRAME, 0,
				       FRAME - size % FRAME);
				pm_container_unmap(M.pm, addr, 1);
			} else {
				cache_drop(n, size / FRAME, size / FRAME + 1);
			}
		}
		/* (the server's version is one more if the size changed) */
		n->size = size;
		cache_learn(n, &a, a.version == before ? before : before + 1);
		n->size = a.size;
	} else {
		n->attr = a;
	}
	stat_of_node(n, &st);
	pthread_mutex_unlock(&n->lock);
	fuse_reply_attr(req, &st, 0);
}

static void make(fuse_req_t req, fuse_ino_t parent, const char *name,
		 mode_t mode, const char *target, struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct pmfs_buf b, rep;
	struct pmfs_attr a;
	error_t err;

	req_init(&b);
	pmfs_put_u64(&b, parent);
	pmfs_put_u32(&b, mode);
	pmfs_put_u32(&b, ctx->uid);
	pmfs_put_u32(&b, ctx->gid);
	pmfs_put_u32(&b, fi ? PMFS_MAKE_OPEN : 0);
	pmfs_put_str(&b, name, strlen(name));
	pmfs_put_str(&b, target ? target : "", target ? strlen(target) : 0);
	if ((err = srv_call(PMFS_MAKE, &b, &rep))) {
		fuse_reply_err(req, err);
		return;
	}
	pmfs_get_attr(&rep, &a);
	if (fi) {
		struct fuse_entry_param e = { .ino = a.ino,
					      .generation = M.generation };
		struct cnode *n = cnode_get(a.ino, true);

		if (!n) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		pthread_mutex_lock(&n->lock);
		cache_learn(n, &a, a.version);
		n->opens++;
		stat_of_node(n, &e.attr);
		pthread_mutex_unlock(&n->lock);
		name_remember(parent, name, a.ino);
		fi->fh = 1;   /* the server counts this open */
		fuse_reply_create(req, &e, fi);
		return;
	}
	reply_entry(req, parent, name, &a);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	if (!S_ISREG(mode)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	make(req, parent, name, mode, NULL, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	make(req, parent, name, S_IFDIR | (mode & 07777), NULL, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	if (strlen(link) > PMFS_TARGET_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	make(req, parent, name, S_IFLNK | 0777, link, NULL);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	make(req, parent, name, S_IFREG | (mode & 07777), NULL, fi);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name,
			uint16_t op)
{
	struct pmfs_buf b, rep;
	error_t err;

	req_init(&b);
	pmfs_put_u64(&b, parent);
	pmfs_put_str(&b, name, strlen(name));
	err = srv_call(op, &b, &rep);
	if (!err || err == ENOENT)
		name_forget(parent, name);
	fuse_reply_err(req, err);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, PMFS_UNLINK);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, PMFS_RMDIR);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct pmfs_buf b, rep;
	error_t err;

	if (flags & ~RENAME_NOREPLACE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	req_init(&b);
	pmfs_put_u64(&b, parent);
	pmfs_put_str(&b, name, strlen(name));
	pmfs_put_u64(&b, newparent);
	pmfs_put_str(&b, newname, strlen(newname));
	pmfs_put_u32(&b, flags & RENAME_NOREPLACE ? PMFS_RENAME_NOREPLACE : 0);
	err = srv_call(PMFS_RENAME, &b, &rep);
	if (!err) {
		name_forget(parent, name);
		name_forget(newparent, newname);
	}
	fuse_reply_err(req, err);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char target[PMFS_TARGET_MAX + 1];
	struct pmfs_buf b, rep;
	error_t err;

	req_init(&b);
	pmfs_put_u64(&b, ino);
	if ((err = srv_call(PMFS_READLINK, &b, &rep))) {
		fuse_reply_err(req, err);
		return;
	}
	pmfs_get_str(&rep, target, PMFS_TARGET_MAX);
	fuse_reply_readlink(req, rep.bad ? "" : target);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cnode *n = cnode_get(ino, false);
	struct pmfs_buf b, rep;
	struct pmfs_attr a;
	error_t err;

	if (!n) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	req_init(&b);
	pmfs_put_u64(&b, ino);
	pthread_mutex_lock(&n->lock);
	err = srv_call(PMFS_OPEN, &b, &rep);
	if (!err) {
		uint64_t held = n->version;

		pmfs_get_attr(&rep, &a);
		/* Close-to-open: another version drops what is held. */
		if (held && held != a.version)
			cache_forget_clean(n);
		n->version = a.version;
		cache_learn(n, &a, a.version);
		fi->keep_cache = held == a.version;
		fi->fh = 1;
	} else if (err == EIO && n->known) {
		fi->keep_cache = 1;     /* the server is gone: what is held */
		fi->fh = 0;
		err = 0;
	}
	if (!err)
		n->opens++;
	pthread_mutex_unlock(&n->lock);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct cnode *n = cnode_find(ino);
	uint64_t len, s, e;
	char *addr;
	error_t err;

	if (!n) {
		fuse_reply_err(req, EIO);
		return;
	}
	pthread_mutex_lock(&n->lock);
	if ((uint64_t)off >= n->size) {
		pthread_mutex_unlock(&n->lock);
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	len = n->size - (uint64_t)off < size ? n->size - (uint64_t)off : size;
	s = (uint64_t)off / FRAME;
	e = pmfs_frames((uint64_t)off + len);
	err = cache_need(n, s, e, true);
	if (!err)
		err = cache_map(n, s, e, false, &addr);
	if (err) {
		pthread_mutex_unlock(&n->lock);
		fuse_reply_err(req, err == ENOSPC ? ENOMEM : EIO);
		return;
	}
	fuse_reply_buf(req, addr + off % FRAME, len);
	pthread_mutex_unlock(&n->lock);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct cnode *n = cnode_find(ino);
	uint64_t end = (uint64_t)off + size, s, e;
	char *addr;
	error_t err = 0;

	if (!n) {
		fuse_reply_err(req, EIO);
		return;
	}
	if (!size) {
		fuse_reply_write(req, 0);
		return;
	}
	if (end > (uint64_t)INT32_MAX * FRAME) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	s = (uint64_t)off / FRAME;
	e = pmfs_frames(end);
	pthread_mutex_lock(&n->lock);
	/* A frame written in part keeps the rest of its bytes: fetched (or,
	 * past the server's end, zeros). */
	if (off % FRAME)
		err = cache_need(n, s, s + 1, false);
	if (!err && end % FRAME)
		err = cache_need(n, e - 1, e, false);
	/* The rest is written whole; frames for the writes to come are had
	 * with these, up to the chunk's end (allocated, held once written). */
	if (!err) {
		uint64_t lim = (e / WINDOW_FRAMES + 1) * WINDOW_FRAMES;

		err = cache_alloc(n, s, lim);
		if (err == ENOSPC)
			err = cache_alloc(n, s, e);
	}
	if (!err)
		err = cache_map(n, s, e, true, &addr);
	if (err) {
		pthread_mutex_unlock(&n->lock);
		fuse_reply_err(req, err == ENOSPC ? ENOSPC : EIO);
		return;
	}
	memcpy(addr + off % FRAME, buf, size);
	cache_written(n, s, e);
	if (end > n->size)
		n->size = end;
	pthread_mutex_unlock(&n->lock);
	fuse_reply_write(req, size);
}

static error_t commit_ino(fuse_ino_t ino)
{
	struct cnode *n = cnode_find(ino);
	error_t err;

	if (!n)
		return 0;
	pthread_mutex_lock(&n->lock);
	err = cache_commit(n);
	pthread_mutex_unlock(&n->lock);
	return err;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, commit_ino(ino));
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	fuse_reply_err(req, commit_ino(ino));
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cnode *n = cnode_find(ino);
	struct pmfs_buf b, rep;

	if (n) {
		pthread_mutex_lock(&n->lock);
		/* (an error was the flush's to report) */
		cache_commit(n);
		n->opens--;
		if (fi->fh) {
			req_init(&b);
			pmfs_put_u64(&b, ino);
			srv_call(PMFS_RELEASE, &b, &rep);
		}
		pthread_mutex_unlock(&n->lock);
	}
	fuse_reply_err(req, 0);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	char *buf = calloc(1, size), name[PMFS_NAME_MAX + 1];
	size_t used = 0;
	uint64_t cookie = (uint64_t)off;
	bool end = false;
	error_t err = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* . and .. first, at cookies 1 and 2. */
	for (uint64_t k = cookie; k < 2; k++) {
		struct stat st = { .st_ino = ino, .st_mode = S_IFDIR };
		size_t n = fuse_add_direntry(req, buf + used, size - used,
					     k ? ".." : ".", &st, (off_t)k + 1);

		if (n > size - used)
			goto out;
		used += n;
		cookie = k + 1;
	}
	while (!end) {
		struct pmfs_buf b, rep;
		uint32_t count;

		req_init(&b);
		pmfs_put_u64(&b, ino);
		pmfs_put_u64(&b, cookie);
		if ((err = srv_call(PMFS_READDIR, &b, &rep)))
			break;
		count = pmfs_get_u32(&rep);
		for (uint32_t k = 0; k < count; k++) {
			struct stat st = { 0 };
			uint64_t c;
			size_t n;

			st.st_ino = pmfs_get_u64(&rep);
			st.st_mode = pmfs_get_u32(&rep);
			c = pmfs_get_u64(&rep);
			pmfs_get_str(&rep, name, PMFS_NAME_MAX);
			if (rep.bad) {
				err = EIO;
				goto out;
			}
			n = fuse_add_direntry(req, buf + used, size - used,
					      name, &st, (off_t)c);
			if (n > size - used)
				goto out;
			used += n;
			cookie = c;
		}
		end = pmfs_get_u8(&rep) || !count;
	}
out:
	if (err && !used)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct pmfs_buf b, rep;
	struct statvfs sv = { 0 };
	error_t err;

	req_init(&b);
	if ((err = srv_call(PMFS_STATFS, &b, &rep))) {
		fuse_reply_err(req, err);
		return;
	}
	sv.f_bsize = sv.f_frsize = FRAME;
	sv.f_blocks = pmfs_get_u64(&rep);
	sv.f_bfree = pmfs_get_u64(&rep);
	sv.f_bavail = pmfs_get_u64(&rep);
	sv.f_files = pmfs_get_u64(&rep);
	sv.f_ffree = sv.f_favail = UINT32_MAX;
	sv.f_files += sv.f_ffree;
	sv.f_namemax = PMFS_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			       off_t off_out, struct fuse_file_info *fi_out,
			       size_t len, int flags)
{
	struct cnode *n = cnode_find(ino_out);
	struct pmfs_buf b, rep;
	struct pmfs_attr a;
	uint64_t copied, before;
	error_t err;

	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* Both files as this mount wrote them, then the server copies. */
	if ((err = commit_ino(ino_in)) || !n) {
		fuse_reply_err(req, err ? err : EIO);
		return;
	}
	pthread_mutex_lock(&n->lock);
	if ((err = cache_commit(n)))
		goto out;
	req_init(&b);
	pmfs_put_u64(&b, ino_in);
	pmfs_put_u64(&b, (uint64_t)off_in);
	pmfs_put_u64(&b, ino_out);
	pmfs_put_u64(&b, (uint64_t)off_out);
	pmfs_put_u64(&b, len);
	before = n->version;
	if ((err = srv_call(PMFS_COPY, &b, &rep)))
		goto out;
	copied = pmfs_get_u64(&rep);
	pmfs_get_attr(&rep, &a);
	/* The frames written by the server are no longer what is held. */
	if (copied)
		cache_drop(n, (uint64_t)off_out / FRAME,
			   pmfs_frames((uint64_t)off_out + copied));
	cache_learn(n, &a, copied ? before + 1 : before);
	pthread_mutex_unlock(&n->lock);
	fuse_reply_write(req, copied);
	return;
out:
	pthread_mutex_unlock(&n->lock);
	fuse_reply_err(req, err);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct pmfs_buf b, rep;
	char v[32];
	uint32_t policy = PM_PLACE_LOCAL, node = 0;
	char *endp;
	error_t err;

	if (strcmp(name, XATTR_NODE)) {
		fuse_reply_err(req, ENOTSUP);
		return;
	}
	/* "local", "interleave" or a node id. */
	if (size >= sizeof(v)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	memcpy(v, value, size);
	v[size] = '\0';
	if (!strcmp(v, "interleave")) {
		policy = PM_PLACE_INTERLEAVE;
	} else if (strcmp(v, "local")) {
		unsigned long id = strtoul(v, &endp, 10);

		if (!v[0] || *endp || !id || id > UINT16_MAX) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		policy = PM_PLACE_NODE;
		node = (uint32_t)id;
	}
	req_init(&b);
	pmfs_put_u64(&b, ino);
	pmfs_put_u32(&b, policy);
	pmfs_put_u32(&b, node);
	err = srv_call(PMFS_SETPLACE, &b, &rep);
	fuse_reply_err(req, err);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	char text[PMFS_NAME_MAX + 1];
	struct pmfs_buf b, rep;
	size_t n;
	error_t err;

	if (strcmp(name, XATTR_INFO)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	req_init(&b);
	pmfs_put_u64(&b, ino);
	if ((err = srv_call(PMFS_INFO, &b, &rep))) {
		fuse_reply_err(req, err);
		return;
	}
	n = pmfs_get_str(&rep, text, PMFS_NAME_MAX);
	if (!size)
		fuse_reply_xattr(req, n);
	else if (size < n)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, text, n);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	if (!size)
		fuse_reply_xattr(req, 0);
	else
		fuse_reply_buf(req, NULL, 0);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	/* An open with O_TRUNC comes as a setattr of the size (one path for
	 * every truncation). */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.readdir = op_readdir,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.create = op_create,
	.forget_multi = op_forget_multi,
	.copy_file_range = op_copy_file_range,
};

/* ---- start ---- */

static error_t server_connect(const char *hostport)
{
	char host[256], port[16];
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai, *p;
	int fd = -1, one = 1, r;

	if (!colon || colon == hostport || !colon[1] ||
	    (size_t)(colon - hostport) >= sizeof(host) ||
	    strlen(colon + 1) >= sizeof(port)) {
		pmfs_say("--server %s: not HOST:PORT", hostport);
		return EINVAL;
	}
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	strcpy(port, colon + 1);
	if ((r = getaddrinfo(host, port, &hints, &ai))) {
		pmfs_say("--server %s: %s", hostport, gai_strerror(r));
		return EINVAL;
	}
	for (p = ai; p; p = p->ai_next) {
		fd = socket(p->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && !connect(fd, p->ai_addr, p->ai_addrlen))
			break;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0) {
		pmfs_say("--server %s: %m", hostport);
		return ECONNREFUSED;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	M.fd = fd;
	return 0;
}

static error_t hello(void)
{
	struct pmfs_buf b, rep;
	pm_task_t me;
	error_t err;

	if ((err = pm_self(M.pm, &me)))
		return err;
	req_init(&b);
	pmfs_put_u64(&b, me);
	if ((err = srv_call(PMFS_HELLO, &b, &rep)))
		return err;
	M.server_task = pmfs_get_u64(&rep);
	M.generation = pmfs_get_u64(&rep);
	return rep.bad ? EPROTO : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pmfs --socket PMD_SOCKET --server HOST:PORT "
			"MOUNTPOINT [-f] [-d] [-o OPTIONS]\n");
}

/* The parent waits for the child's word: 0 once it serves. */
static int wait_child(int rfd)
{
	char c = 1;

	if (read(rfd, &c, 1) != 1)
		return 1;
	return c;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "server", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *sock = NULL, *server = NULL, *mnt;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	/* (API 3.4: this struct is the loop's whole configuration) */
	struct fuse_loop_config loop = { .clone_fd = 0, .max_idle_threads = 10 };
	struct fuse_session *se;
	bool foreground = false, debug = false;
	char *mopts = NULL;
	int o, pfd[2] = { -1, -1 }, ret = 1;
	char status = 1;
	error_t err;

	while ((o = getopt_long(argc, argv, "fdo:h", opts, NULL)) != -1) {
		switch (o) {
		case 's': sock = optarg; break;
		case 'S': server = optarg; break;
		case 'f': foreground = true; break;
		case 'd': debug = foreground = true; break;
		case 'o': mopts = optarg; break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if (!sock || !server || optind != argc - 1) {
		usage();
		return 2;
	}
	mnt = argv[optind];
	if (!foreground) {
		pid_t pid;

		if (pipe(pfd)) {
			pmfs_say("pipe: %m");
			return 1;
		}
		if ((pid = fork()) < 0) {
			pmfs_say("fork: %m");
			return 1;
		}
		if (pid > 0) {
			close(pfd[1]);
			return wait_child(pfd[0]);
		}
		close(pfd[0]);
		setsid();
	}
	/* (after the fork: the session belongs to this process) */
	M.fd = -1;
	if (pthread_key_create(&tbufs_key, free)) {
		pmfs_say("pthread_key_create failed");
		goto out;
	}
	pthread_mutex_init(&M.tlock, NULL);
	pthread_mutex_init(&M.slock, NULL);
	M.tsize = 1024;
	M.nsize = 65536;
	M.tab = calloc(M.tsize, sizeof(*M.tab));
	M.names = calloc(M.nsize, sizeof(*M.names));
	if (!M.tab || !M.names) {
		pmfs_say("out of memory");
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((err = pm_connect(sock, &M.pm))) {
		pmfs_say("connecting to the pmd at %s: %s", sock, strerror(err));
		goto out;
	}
	if ((err = server_connect(server)))
		goto out_pm;
	if ((err = hello())) {
		pmfs_say("--server %s: not a pmfs server (%s)", server, strerror(err));
		goto out_pm;
	}
	fuse_opt_add_arg(&args, "pmfs");
	fuse_opt_add_arg(&args, "-o");
	fuse_opt_add_arg(&args, "default_permissions,fsname=pmfs,subtype=pmfs");
	if (mopts) {
		fuse_opt_add_arg(&args, "-o");
		fuse_opt_add_arg(&args, mopts);
	}
	if (debug)
		fuse_opt_add_arg(&args, "-d");
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se) {
		pmfs_say("the FUSE session could not be made (see above)");
		goto out_args;
	}
	if (fuse_set_signal_handlers(se) || fuse_session_mount(se, mnt)) {
		pmfs_say("mounting on %s failed (see above)", mnt);
		goto out_session;
	}
	if (!foreground) {
		int fd = open("/dev/null", O_RDWR);

		status = 0;
		if (write(pfd[1], &status, 1) != 1)
			pmfs_say("the parent is gone");
		close(pfd[1]);
		pfd[1] = -1;
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		if (chdir("/"))
			pmfs_say("chdir /: %m");
	} else {
		printf("pmfs: %s mounted from %s\n", mnt, server);
		fflush(stdout);
	}
	ret = fuse_session_loop_mt(se, &loop) ? 1 : 0;
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out_args:
	fuse_opt_free_args(&args);
out_pm:
	pm_disconnect(M.pm);
out:
	if (pfd[1] >= 0) {
		if (write(pfd[1], &status, 1) != 1)
			pmfs_say("the parent is gone");
	}
	return ret;
}
