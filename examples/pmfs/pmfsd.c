/*
 * pmfsd.c - the pmfs file server: a directory tree whose file data lives
 * in its own pmd containers (one a regular file), its metadata in this
 * process's memory.
 *
 *   pmfsd --socket PMD_SOCKET --listen HOST:PORT [--backing DIR]
 *
 * Mounts (pmfs) connect over TCP and speak proto.h. Data moves only by the
 * container interface: a mount's read is a copy of file frames into a
 * container the mount shares with this server, its write-back a copy the
 * other way; copy_file_range is a copy between two files' containers,
 * logical (copy-on-write) because they have one home, this server's node.
 *
 * One thread serves everything, one request at a time (requests are short:
 * the pmds move the data). A connection that stalls in the middle of a
 * message for PMFSD_IO_TIMEOUT_S is cut off; a malformed message is
 * answered EINVAL (or, when it cannot be framed, the connection is cut)
 * and changes nothing.
 *
 * With --backing DIR the tree is loaded from DIR at start (directories,
 * regular files, symbolic links) and every change is written through to
 * it, so DIR holds the tree as of the last change; a change that cannot
 * be written through is logged and served all the same (memory is the
 * truth while the server runs).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define PMFSD_CONNS_MAX 256
#define PMFSD_IO_TIMEOUT_S 5
#define PMFSD_CHUNK (1u << 20)   /* bytes of a load or write-through */
#define FRAME PM_FRAME_SIZE

struct dentry;

/* A file, directory or symbolic link. Owned by the inode table; a
 * directory entry refers to it (no hard links: at most one entry). */
struct inode {
	uint64_t ino;
	uint32_t mode, nlink, uid, gid;
	uint64_t size;                /* bytes */
	uint64_t version;             /* of the data */
	struct timespec atime, mtime, ctime;
	container_t cont;             /* regular files: 0 until it has a frame */
	uint64_t nframes;             /* frames 0..nframes-1 allocated */
	int policy;                   /* PM_PLACE_* of new frames */
	pm_node_t place_node;
	char *target;                 /* symbolic links */
	struct dentry *entry;         /* the entry naming it; NULL: unlinked */
	uint32_t opens;               /* opens of all mounts */
	struct dentry *first, *last;  /* directories: entries by cookie */
	uint64_t next_cookie;         /* directories */
	uint64_t nsubdirs;            /* directories */
	struct inode *hnext;          /* inode table chain */
};

struct dentry {
	struct inode *dir;
	struct inode *inode;
	char *name;
	uint64_t cookie;              /* readdir position, rising in dir */
	struct dentry *prev, *next;   /* dir's entries by cookie */
	struct dentry *hnext;         /* name table chain */
};

/* One mount's connection: the opens it holds, given back if it goes. */
struct conn {
	int fd;
	pm_task_t task;               /* from HELLO; 0 before it */
	uint64_t *open_ino;           /* open_ino[i] opened open_n[i] times */
	uint32_t *open_n;
	size_t nopen, capopen;
};

static struct {
	pm_t *pm;
	pm_task_t task;
	uint64_t generation;
	const char *backing;          /* NULL: none */
	struct inode **itab;          /* ino -> inode */
	size_t isize, icount;
	struct dentry **dtab;         /* (dir, name) -> entry */
	size_t dsize, dcount;
	uint64_t next_ino;
	struct inode *root;
	struct conn conns[PMFSD_CONNS_MAX];
	size_t nconns;
	uint8_t *in, *out;            /* one message each way */
	volatile sig_atomic_t stop;
} S;

const char *pmfs_prog = "pmfsd";

/* ---- tables ---- */

static struct inode *inode_find(uint64_t ino)
{
	struct inode *i = S.itab[pmfs_hash_ino(ino, S.isize)];

	while (i && i->ino != ino)
		i = i->hnext;
	return i;
}

static int tables_grow(void)
{
	if (S.icount * 2 >= S.isize) {
		size_t n = S.isize * 2;
		struct inode **t = calloc(n, sizeof(*t));

		if (!t)
			return ENOMEM;
		for (size_t k = 0; k < S.isize; k++)
			for (struct inode *i = S.itab[k], *nx; i; i = nx) {
				nx = i->hnext;
				i->hnext = t[pmfs_hash_ino(i->ino, n)];
				t[pmfs_hash_ino(i->ino, n)] = i;
			}
		free(S.itab);
		S.itab = t;
		S.isize = n;
	}
	if (S.dcount * 2 >= S.dsize) {
		size_t n = S.dsize * 2;
		struct dentry **t = calloc(n, sizeof(*t));

		if (!t)
			return ENOMEM;
		for (size_t k = 0; k < S.dsize; k++)
			for (struct dentry *d = S.dtab[k], *nx; d; d = nx) {
				size_t h = pmfs_hash_name(d->dir->ino, d->name, n);

				nx = d->hnext;
				d->hnext = t[h];
				t[h] = d;
			}
		free(S.dtab);
		S.dtab = t;
		S.dsize = n;
	}
	return 0;
}

static struct dentry *dentry_find(const struct inode *dir, const char *name)
{
	struct dentry *d = S.dtab[pmfs_hash_name(dir->ino, name, S.dsize)];

	while (d && (d->dir != dir || strcmp(d->name, name)))
		d = d->hnext;
	return d;
}

static void dentry_unhash(struct dentry *d)
{
	struct dentry **pp = &S.dtab[pmfs_hash_name(d->dir->ino, d->name, S.dsize)];

	while (*pp != d)
		pp = &(*pp)->hnext;
	*pp = d->hnext;
	S.dcount--;
}

static void dentry_hash(struct dentry *d)
{
	size_t h = pmfs_hash_name(d->dir->ino, d->name, S.dsize);

	d->hnext = S.dtab[h];
	S.dtab[h] = d;
	S.dcount++;
}

/* Links d into dir at the end of its cookie order. */
static void dentry_link(struct inode *dir, struct dentry *d)
{
	d->dir = dir;
	d->cookie = dir->next_cookie++;
	d->prev = dir->last;
	d->next = NULL;
	if (dir->last)
		dir->last->next = d;
	else
		dir->first = d;
	dir->last = d;
	dentry_hash(d);
	d->inode->entry = d;
	if (S_ISDIR(d->inode->mode))
		dir->nsubdirs++;
}

static void dentry_unlink(struct dentry *d)
{
	struct inode *dir = d->dir;

	dentry_unhash(d);
	if (d->prev)
		d->prev->next = d->next;
	else
		dir->first = d->next;
	if (d->next)
		d->next->prev = d->prev;
	else
		dir->last = d->prev;
	if (S_ISDIR(d->inode->mode))
		dir->nsubdirs--;
	d->inode->entry = NULL;
}

static void now(struct timespec *t)
{
	clock_gettime(CLOCK_REALTIME, t);
}

/* A new inode in the table (no entry yet); NULL when memory runs out. */
static struct inode *inode_new(uint32_t mode, uint32_t uid, uint32_t gid)
{
	struct inode *i;

	if (tables_grow() || !(i = calloc(1, sizeof(*i))))
		return NULL;
	i->ino = S.next_ino++;
	i->mode = mode;
	i->uid = uid;
	i->gid = gid;
	i->nlink = S_ISDIR(mode) ? 2 : 1;
	i->next_cookie = PMFS_FIRST_COOKIE;
	i->version = 1;
	now(&i->mtime);
	i->atime = i->ctime = i->mtime;
	size_t h = pmfs_hash_ino(i->ino, S.isize);
	i->hnext = S.itab[h];
	S.itab[h] = i;
	S.icount++;
	return i;
}

/* The inode goes: its container (its frames given back), its memory. */
static void inode_free(struct inode *i)
{
	struct inode **pp = &S.itab[pmfs_hash_ino(i->ino, S.isize)];
	error_t err;

	while (*pp != i)
		pp = &(*pp)->hnext;
	*pp = i->hnext;
	S.icount--;
	if (i->cont && (err = pm_container_destroy(S.pm, i->cont)))
		pmfs_say("inode %lu: destroying its container: %s",
		    (unsigned long)i->ino, strerror(err));
	free(i->target);
	free(i);
}

/* Frees i if nothing names it and nobody has it open. */
static void inode_maybe_free(struct inode *i)
{
	if (!i->entry && i != S.root && !i->opens)
		inode_free(i);
}

static void attr_of(const struct inode *i, struct pmfs_attr *a)
{
	*a = (struct pmfs_attr){
		.ino = i->ino, .size = i->size, .version = i->version,
		.frames = i->nframes, .mode = i->mode, .nlink = i->nlink,
		.uid = i->uid, .gid = i->gid,
		.atime = i->atime.tv_sec, .atime_ns = (uint32_t)i->atime.tv_nsec,
		.mtime = i->mtime.tv_sec, .mtime_ns = (uint32_t)i->mtime.tv_nsec,
		.ctime = i->ctime.tv_sec, .ctime_ns = (uint32_t)i->ctime.tv_nsec,
	};
	if (S_ISDIR(i->mode))
		a->nlink = 2 + (uint32_t)i->nsubdirs;
	if (S_ISLNK(i->mode))
		a->size = strlen(i->target);
}

/* ---- the backing directory ---- */

/* i's path under the backing directory into p; false when it has none
 * (unlinked) or it does not fit. */
static bool backing_path(const struct inode *i, char *p, size_t n)
{
	const struct inode *at[PATH_MAX / 2];
	size_t depth = 0, off;

	for (; i != S.root; i = i->entry->dir) {
		if (!i->entry || depth == sizeof(at) / sizeof(at[0]))
			return false;
		at[depth++] = i;
	}
	off = (size_t)snprintf(p, n, "%s", S.backing);
	while (depth--) {
		int r = snprintf(p + off, n - off, "/%s", at[depth]->entry->name);

		if (r < 0 || (size_t)r >= n - off)
			return false;
		off += (size_t)r;
	}
	return off < n;
}

static void backing_warn(const char *what, const char *path)
{
	pmfs_say("backing directory: %s %s: %m (served from memory all the same)",
	    what, path);
}

/* Writes frames [start, start+count) of i through to its backing file. */
static void backing_data(const struct inode *i, uint64_t start, uint64_t count)
{
	char path[PATH_MAX];
	static uint8_t *buf;
	int fd;

	if (!S.backing || !backing_path(i, path, sizeof(path)))
		return;
	if (!buf && !(buf = malloc(PMFSD_CHUNK)))
		return;
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		backing_warn("opening", path);
		return;
	}
	if (ftruncate(fd, (off_t)i->size))
		backing_warn("sizing", path);
	if (start > i->nframes)
		start = i->nframes;
	if (count > i->nframes - start)
		count = i->nframes - start;
	while (count) {
		uint64_t n = count < PMFSD_CHUNK / FRAME ? count : PMFSD_CHUNK / FRAME;
		uint64_t off = start * FRAME, len = n * FRAME;
		error_t err;

		if (off + len > i->size)
			len = i->size - off;
		err = pm_container_read(S.pm, i->cont, start, 0, buf, len);
		if (err) {
			pmfs_say("backing directory: reading %s for it: %s", path,
			    strerror(err));
			break;
		}
		if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
			backing_warn("writing", path);
			break;
		}
		start += n;
		count -= n;
	}
	close(fd);
}

static void backing_attr(const struct inode *i, uint32_t valid)
{
	char path[PATH_MAX];

	if (!S.backing || !backing_path(i, path, sizeof(path)))
		return;
	if ((valid & PMFS_SET_MODE) && !S_ISLNK(i->mode) &&
	    chmod(path, i->mode & 07777))
		backing_warn("chmod", path);
	if ((valid & (PMFS_SET_UID | PMFS_SET_GID)) &&
	    lchown(path, i->uid, i->gid))
		backing_warn("chown", path);
	if (valid & PMFS_SET_SIZE && S_ISREG(i->mode) && truncate(path, (off_t)i->size))
		backing_warn("truncate", path);
	if (valid & (PMFS_SET_ATIME | PMFS_SET_MTIME | PMFS_SET_ATIME_NOW |
		     PMFS_SET_MTIME_NOW)) {
		struct timespec t[2] = { i->atime, i->mtime };

		if (utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW))
			backing_warn("utimensat", path);
	}
}

static void backing_make(const struct inode *i)
{
	char path[PATH_MAX];
	int fd;

	if (!S.backing || !backing_path(i, path, sizeof(path)))
		return;
	if (S_ISDIR(i->mode)) {
		if (mkdir(path, i->mode & 07777))
			backing_warn("mkdir", path);
	} else if (S_ISLNK(i->mode)) {
		if (symlink(i->target, path))
			backing_warn("symlink", path);
	} else if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			      i->mode & 07777)) < 0) {
		backing_warn("creating", path);
	} else {
		close(fd);
	}
}

static void backing_remove(const struct inode *i)
{
	char path[PATH_MAX];

	if (!S.backing || !backing_path(i, path, sizeof(path)))
		return;
	if ((S_ISDIR(i->mode) ? rmdir(path) : unlink(path)) && errno != ENOENT)
		backing_warn("removing", path);
}

/* ---- file data ---- */

/* i's container, made on first need with i's placement. */
static error_t file_container(struct inode *i)
{
	error_t err;

	if (i->cont)
		return 0;
	/* (ENOMEM: past the pmd's handles a task, a container a file) */
	if ((err = pm_container_create(S.pm, &i->cont)))
		return err == ENOMEM ? ENOSPC : err;
	if (i->policy != PM_PLACE_LOCAL &&
	    (err = pm_container_set_policy(S.pm, i->cont, i->policy,
					   i->place_node))) {
		pm_container_destroy(S.pm, i->cont);
		i->cont = 0;
	}
	return err;
}

/* The file takes size bytes: frames allocated or given back, and the bytes
 * past a shorter size in its last frame zeroed (the file's bytes past its
 * size are zeros: a later growth shows zeros there). On failure nothing
 * changed. ENOSPC when the frames cannot be had. */
static error_t file_resize(struct inode *i, uint64_t size)
{
	uint64_t nf = pmfs_frames(size);
	error_t err;

	if (nf > INT32_MAX)
		return EFBIG;
	if (nf > i->nframes) {
		int count = (int)(nf - i->nframes);

		if ((err = file_container(i)))
			return err;
		err = pm_container_allocate(S.pm, i->cont, i->nframes, &count, 0);
		if (err)
			return err == ENOMEM ? ENOSPC : err;
	}
	if (size < i->size && size % FRAME) {
		static const uint8_t zeros[FRAME];
		uint64_t f = size / FRAME;

		err = pm_container_write(S.pm, i->cont, f, size % FRAME, zeros,
					 FRAME - size % FRAME);
		if (err) {
			if (nf > i->nframes)
				pm_container_deallocate(S.pm, i->cont, i->nframes,
							(int)(nf - i->nframes));
			return err;
		}
	}
	if (nf < i->nframes) {
		err = pm_container_deallocate(S.pm, i->cont, nf,
					      (int)(i->nframes - nf));
		if (err)
			pmfs_say("inode %lu: giving frames back: %s",
			    (unsigned long)i->ino, strerror(err));
	}
	i->nframes = nf;
	i->size = size;
	return 0;
}

static void file_changed(struct inode *i)
{
	i->version++;
	now(&i->mtime);
	i->ctime = i->mtime;
}

/* ---- requests ---- */

struct req {
	struct conn *c;
	struct pmfs_buf in;   /* the request's payload */
	struct pmfs_buf out;  /* the reply's */
};

static error_t get_inode(struct req *r, struct inode **i_out)
{
	uint64_t ino = pmfs_get_u64(&r->in);
	struct inode *i = inode_find(ino);

	if (r->in.bad)
		return EINVAL;
	if (!i)
		return ESTALE;
	*i_out = i;
	return 0;
}

static error_t get_dir(struct req *r, struct inode **i_out)
{
	error_t err = get_inode(r, i_out);

	if (!err && !S_ISDIR((*i_out)->mode))
		err = ENOTDIR;
	return err;
}

static error_t get_name(struct req *r, char *name)
{
	size_t n = pmfs_get_str(&r->in, name, PMFS_NAME_MAX);

	if (r->in.bad)
		return EINVAL;
	return pmfs_name_ok(name, n) ? 0 : EINVAL;
}

/* The entry a request names: a directory, then a name in it. */
static error_t get_entry(struct req *r, struct inode **dir_out,
			 struct dentry **d_out)
{
	char name[PMFS_NAME_MAX + 1];
	error_t err;

	if ((err = get_dir(r, dir_out)) || (err = get_name(r, name)))
		return err;
	*d_out = dentry_find(*dir_out, name);
	return *d_out ? 0 : ENOENT;
}

static void reply_attr(struct req *r, const struct inode *i)
{
	struct pmfs_attr a;

	attr_of(i, &a);
	pmfs_put_attr(&r->out, &a);
}

static error_t op_hello(struct req *r)
{
	uint64_t task = pmfs_get_u64(&r->in);

	if (r->in.bad || !task)
		return EINVAL;
	r->c->task = task;
	pmfs_put_u64(&r->out, S.task);
	pmfs_put_u64(&r->out, S.generation);
	return 0;
}

static error_t op_lookup(struct req *r)
{
	struct inode *dir;
	struct dentry *d;
	error_t err;

	if ((err = get_entry(r, &dir, &d)))
		return err;
	reply_attr(r, d->inode);
	return 0;
}

static error_t op_getattr(struct req *r)
{
	struct inode *i;
	error_t err = get_inode(r, &i);

	if (!err)
		reply_attr(r, i);
	return err;
}

static error_t op_setattr(struct req *r)
{
	struct inode *i;
	uint32_t valid, mode, uid, gid;
	uint64_t size;
	struct timespec at, mt;
	error_t err;

	if ((err = get_inode(r, &i)))
		return err;
	valid = pmfs_get_u32(&r->in);
	mode = pmfs_get_u32(&r->in);
	uid = pmfs_get_u32(&r->in);
	gid = pmfs_get_u32(&r->in);
	size = pmfs_get_u64(&r->in);
	at.tv_sec = (time_t)pmfs_get_u64(&r->in);
	at.tv_nsec = pmfs_get_u32(&r->in);
	mt.tv_sec = (time_t)pmfs_get_u64(&r->in);
	mt.tv_nsec = pmfs_get_u32(&r->in);
	if (r->in.bad || (valid & ~PMFS_SET_ALL) || at.tv_nsec >= 1000000000 ||
	    mt.tv_nsec >= 1000000000 || (mode & ~07777u))
		return EINVAL;
	if ((valid & PMFS_SET_SIZE) && !S_ISREG(i->mode))
		return S_ISDIR(i->mode) ? EISDIR : EINVAL;
	/* The size first: the only part that can fail. */
	if (valid & PMFS_SET_SIZE) {
		if (size > (uint64_t)INT32_MAX * FRAME)
			return EFBIG;
		if (size != i->size) {
			if ((err = file_resize(i, size)))
				return err;
			file_changed(i);
		}
	}
	if (valid & PMFS_SET_MODE)
		i->mode = (i->mode & S_IFMT) | mode;
	if (valid & PMFS_SET_UID)
		i->uid = uid;
	if (valid & PMFS_SET_GID)
		i->gid = gid;
	if (valid & PMFS_SET_ATIME_NOW)
		now(&i->atime);
	else if (valid & PMFS_SET_ATIME)
		i->atime = at;
	if (valid & PMFS_SET_MTIME_NOW)
		now(&i->mtime);
	else if (valid & PMFS_SET_MTIME)
		i->mtime = mt;
	now(&i->ctime);
	backing_attr(i, valid);
	reply_attr(r, i);
	return 0;
}

static error_t conn_open(struct conn *c, struct inode *i)
{
	for (size_t k = 0; k < c->nopen; k++)
		if (c->open_ino[k] == i->ino) {
			c->open_n[k]++;
			i->opens++;
			return 0;
		}
	if (c->nopen == c->capopen) {
		size_t n = c->capopen ? c->capopen * 2 : 16;
		uint64_t *a = realloc(c->open_ino, n * sizeof(*a));

		if (!a)
			return ENOMEM;
		c->open_ino = a;
		uint32_t *b = realloc(c->open_n, n * sizeof(*b));
		if (!b)
			return ENOMEM;
		c->open_n = b;
		c->capopen = n;
	}
	c->open_ino[c->nopen] = i->ino;
	c->open_n[c->nopen++] = 1;
	i->opens++;
	return 0;
}

static error_t op_make(struct req *r)
{
	char name[PMFS_NAME_MAX + 1], target[PMFS_TARGET_MAX + 1];
	uint32_t mode, uid, gid, flags;
	struct inode *dir, *i;
	struct dentry *d;
	size_t tn;
	error_t err;

	if ((err = get_dir(r, &dir)))
		return err;
	mode = pmfs_get_u32(&r->in);
	uid = pmfs_get_u32(&r->in);
	gid = pmfs_get_u32(&r->in);
	flags = pmfs_get_u32(&r->in);
	if ((err = get_name(r, name)))
		return err;
	tn = pmfs_get_str(&r->in, target, PMFS_TARGET_MAX);
	if (r->in.bad || (flags & ~PMFS_MAKE_OPEN))
		return EINVAL;
	switch (mode & S_IFMT) {
	case S_IFREG:
		break;
	case S_IFDIR:
	case S_IFLNK:
		if (flags & PMFS_MAKE_OPEN)
			return EINVAL;
		break;
	default:
		return EPERM;    /* no devices, fifos or sockets */
	}
	if (S_ISLNK(mode) && !tn)
		return EINVAL;
	if (dentry_find(dir, name))
		return EEXIST;
	/* Everything that can fail, before anything changes. */
	if (!(d = calloc(1, sizeof(*d))) || !(d->name = strdup(name)))
		goto nomem;
	if (!(i = inode_new(mode, uid, gid)))
		goto nomem;
	if (S_ISLNK(mode))
		i->target = strdup(target);
	if (S_ISLNK(mode) && !i->target) {
		inode_free(i);
		goto nomem;
	}
	if ((flags & PMFS_MAKE_OPEN) && conn_open(r->c, i)) {
		inode_free(i);
		goto nomem;
	}
	d->inode = i;
	dentry_link(dir, d);
	now(&dir->mtime);
	dir->ctime = dir->mtime;
	backing_make(i);
	reply_attr(r, i);
	return 0;
nomem:
	if (d)
		free(d->name);
	free(d);
	return ENOMEM;
}

static void dir_touched(struct inode *dir)
{
	now(&dir->mtime);
	dir->ctime = dir->mtime;
}

/* An entry goes, with its inode when nothing else holds it. */
static void entry_remove(struct dentry *d)
{
	struct inode *i = d->inode;

	dentry_unlink(d);
	dir_touched(d->dir);
	i->nlink = 0;
	now(&i->ctime);
	free(d->name);
	free(d);
	inode_maybe_free(i);
}

static error_t op_remove(struct req *r, bool dir_wanted)
{
	struct inode *dir;
	struct dentry *d;
	error_t err;

	if ((err = get_entry(r, &dir, &d)))
		return err;
	if (dir_wanted && !S_ISDIR(d->inode->mode))
		return ENOTDIR;
	if (!dir_wanted && S_ISDIR(d->inode->mode))
		return EISDIR;
	if (dir_wanted && d->inode->first)
		return ENOTEMPTY;
	backing_remove(d->inode);
	entry_remove(d);
	return 0;
}

/* Whether a is b or one of b's ancestors. */
static bool is_ancestor(const struct inode *a, const struct inode *b)
{
	for (; b; b = b->entry ? b->entry->dir : NULL)
		if (a == b)
			return true;
	return false;
}

static error_t op_rename(struct req *r)
{
	char name[PMFS_NAME_MAX + 1], newname[PMFS_NAME_MAX + 1];
	struct inode *dir, *newdir;
	struct dentry *d, *old;
	uint32_t flags;
	char *nn;
	error_t err;

	if ((err = get_dir(r, &dir)) || (err = get_name(r, name)) ||
	    (err = get_dir(r, &newdir)) || (err = get_name(r, newname)))
		return err;
	flags = pmfs_get_u32(&r->in);
	if (r->in.bad || (flags & ~PMFS_RENAME_NOREPLACE))
		return EINVAL;
	if (!(d = dentry_find(dir, name)))
		return ENOENT;
	old = dentry_find(newdir, newname);
	if (old == d)
		return 0;
	if (S_ISDIR(d->inode->mode) && is_ancestor(d->inode, newdir))
		return EINVAL;
	if (old) {
		if (flags & PMFS_RENAME_NOREPLACE)
			return EEXIST;
		if (S_ISDIR(old->inode->mode) && !S_ISDIR(d->inode->mode))
			return EISDIR;
		if (!S_ISDIR(old->inode->mode) && S_ISDIR(d->inode->mode))
			return ENOTDIR;
		if (old->inode->first)
			return ENOTEMPTY;
	}
	if (!(nn = strdup(newname)))
		return ENOMEM;
	if (tables_grow()) {
		free(nn);
		return ENOMEM;
	}
	if (S.backing) {
		char from[PATH_MAX], to[PATH_MAX];
		bool have_from = backing_path(d->inode, from, sizeof(from));

		/* The new path: the new directory's, then the name. */
		if (have_from && backing_path(newdir, to, sizeof(to)) &&
		    strlen(to) + 1 + strlen(newname) < sizeof(to)) {
			strcat(to, "/");
			strcat(to, newname);
			if (rename(from, to))
				backing_warn("renaming", from);
		}
	}
	if (old)
		entry_remove(old); /* (its backing file the rename replaced) */
	dentry_unlink(d);
	dir_touched(dir);
	free(d->name);
	d->name = nn;
	dentry_link(newdir, d);
	dir_touched(newdir);
	now(&d->inode->ctime);
	return 0;
}

static error_t op_readdir(struct req *r)
{
	struct inode *dir;
	uint64_t cookie;
	struct dentry *d;
	size_t at_n;
	uint32_t n = 0;
	error_t err;

	if ((err = get_dir(r, &dir)))
		return err;
	cookie = pmfs_get_u64(&r->in);
	if (r->in.bad)
		return EINVAL;
	at_n = r->out.len;
	pmfs_put_u32(&r->out, 0);
	for (d = dir->first; d && d->cookie <= cookie; d = d->next)
		;
	for (; d; d = d->next) {
		size_t len = strlen(d->name);

		if (r->out.len + 8 + 4 + 8 + 2 + len + 1 > PMFS_READDIR_MAX)
			break;
		pmfs_put_u64(&r->out, d->inode->ino);
		pmfs_put_u32(&r->out, d->inode->mode);
		pmfs_put_u64(&r->out, d->cookie);
		pmfs_put_str(&r->out, d->name, len);
		n++;
	}
	pmfs_put_u8(&r->out, d == NULL);
	memcpy(r->out.p + at_n, &n, 4);
	return 0;
}

static error_t op_readlink(struct req *r)
{
	struct inode *i;
	error_t err = get_inode(r, &i);

	if (err)
		return err;
	if (!S_ISLNK(i->mode))
		return EINVAL;
	pmfs_put_str(&r->out, i->target, strlen(i->target));
	return 0;
}

static error_t op_open(struct req *r)
{
	struct inode *i;
	error_t err = get_inode(r, &i);

	if (err || (err = conn_open(r->c, i)))
		return err;
	reply_attr(r, i);
	return 0;
}

static error_t op_release(struct req *r)
{
	uint64_t ino = pmfs_get_u64(&r->in);
	struct conn *c = r->c;

	if (r->in.bad)
		return EINVAL;
	for (size_t k = 0; k < c->nopen; k++) {
		struct inode *i;

		if (c->open_ino[k] != ino)
			continue;
		i = inode_find(ino);
		i->opens--;
		if (!--c->open_n[k]) {
			c->open_ino[k] = c->open_ino[--c->nopen];
			c->open_n[k] = c->open_n[c->nopen];
		}
		inode_maybe_free(i);
		return 0;
	}
	return EBADF;      /* this mount did not open it */
}

/* The weak reference a token names: a container a mount shares with us. */
static error_t import(struct req *r, container_t *ref)
{
	pm_cap_token_t tok;
	error_t err;

	pmfs_get_bytes(&r->in, tok.bytes, sizeof(tok.bytes));
	if (r->in.bad)
		return EINVAL;
	err = pm_cap_import(S.pm, &tok, ref);
	/* A token that is not for us, forged, or already revoked. */
	if (err == EACCES || err == EINVAL || err == ESTALE)
		return EACCES;
	return err;
}

/* An error of a copy between a file and a mount's container, as the mount
 * should see it. */
static error_t copy_error(error_t err)
{
	switch (err) {
	case 0:
	case EIO:
	case ENOSPC:
		return err;
	case ENOMEM:          /* a frame the mount did not allocate */
	case ENOENT:
		return EINVAL;
	case ESTALE:          /* the mount unshared during the copy */
	case EACCES:
	case EPERM:
		return EACCES;
	case ENODEV:          /* a node holding frames is down */
	default:
		return EIO;
	}
}

static error_t op_fetch(struct req *r)
{
	struct inode *i;
	uint64_t start;
	uint32_t count;
	container_t ref;
	frame_t fe;
	error_t err;

	if ((err = get_inode(r, &i)))
		return err;
	start = pmfs_get_u64(&r->in);
	count = pmfs_get_u32(&r->in);
	if (r->in.bad || !count || count > PMFS_FETCH_MAX)
		return EINVAL;
	if (!S_ISREG(i->mode))
		return EISDIR;
	if ((err = import(r, &ref)))
		return err;
	if (start < i->nframes) {
		if (count > i->nframes - start)
			count = (uint32_t)(i->nframes - start);
		err = copy_error(pm_container_copy(S.pm, i->cont, start, ref,
						   start, (int)count, 0, &fe));
	}
	pm_cap_release(S.pm, ref);
	if (!err)
		reply_attr(r, i);
	return err;
}

static error_t op_commit(struct req *r)
{
	uint64_t size, old_size;
	struct inode *i;
	container_t ref;
	uint32_t n;
	size_t ranges_at;
	frame_t fe;
	error_t err;

	if ((err = get_inode(r, &i)))
		return err;
	size = pmfs_get_u64(&r->in);
	r->in.off += sizeof(pm_cap_token_t);      /* read by import, below */
	n = pmfs_get_u32(&r->in);
	ranges_at = r->in.off;
	if (r->in.bad || n > PMFS_RANGES_MAX || size > (uint64_t)INT32_MAX * FRAME)
		return EINVAL;
	if (!S_ISREG(i->mode))
		return EISDIR;
	/* decode: every range inside the mount's size, in order, apart. */
	for (uint64_t k = 0, prev_end = 0; k < n; k++) {
		uint64_t s = pmfs_get_u64(&r->in);
		uint32_t c = pmfs_get_u32(&r->in);

		if (r->in.bad || !c || c > PMFS_FETCH_MAX || s < prev_end ||
		    s > pmfs_frames(size) || c > pmfs_frames(size) - s)
			return EINVAL;
		prev_end = s + c;
	}
	r->in.off = 8 + 8;     /* the token, after ino and size */
	if ((err = import(r, &ref)))
		return err;
	old_size = i->size;
	if (size > i->size && (err = file_resize(i, size)))
		goto out;
	r->in.off = ranges_at;
	for (uint32_t k = 0; k < n && !err; k++) {
		uint64_t s = pmfs_get_u64(&r->in);
		uint32_t c = pmfs_get_u32(&r->in);

		err = copy_error(pm_container_copy(S.pm, ref, s, i->cont, s,
						   (int)c, 0, &fe));
		if (!err)
			backing_data(i, s, c);
	}
	if (size > old_size)
		backing_data(i, 0, 0);    /* (the size) */
	/* (ranges copied before a failure stay: the file changed) */
	file_changed(i);
out:
	pm_cap_release(S.pm, ref);
	if (!err)
		reply_attr(r, i);
	return err;
}

/* Bytes [off, off + len) of in into out at off_out, through memory. */
static error_t copy_bytes(struct inode *in, uint64_t off, struct inode *out,
			  uint64_t off_out, uint64_t len)
{
	static uint8_t *buf;
	error_t err;

	if (!buf && !(buf = malloc(PMFSD_CHUNK)))
		return ENOMEM;
	while (len) {
		uint64_t n = len < PMFSD_CHUNK ? len : PMFSD_CHUNK;

		if ((err = pm_container_read(S.pm, in->cont, off / FRAME,
					     off % FRAME, buf, n)) ||
		    (err = pm_container_write(S.pm, out->cont, off_out / FRAME,
					      off_out % FRAME, buf, n)))
			return err == ENODEV ? EIO : err;
		off += n;
		off_out += n;
		len -= n;
	}
	return 0;
}

static error_t op_copy(struct req *r)
{
	struct inode *in, *out;
	uint64_t off_in, off_out, len, head, full;
	frame_t fe;
	error_t err;

	if ((err = get_inode(r, &in)))
		return err;
	off_in = pmfs_get_u64(&r->in);
	if ((err = get_inode(r, &out)))
		return err;
	off_out = pmfs_get_u64(&r->in);
	len = pmfs_get_u64(&r->in);
	if (r->in.bad)
		return EINVAL;
	if (!S_ISREG(in->mode) || !S_ISREG(out->mode))
		return S_ISDIR(in->mode) || S_ISDIR(out->mode) ? EISDIR : EINVAL;
	if (off_in >= in->size)
		len = 0;
	else if (len > in->size - off_in)
		len = in->size - off_in;
	if (off_out > (uint64_t)INT32_MAX * FRAME ||
	    len > (uint64_t)INT32_MAX * FRAME - off_out)
		return EFBIG;
	if (in == out && off_in < off_out + len && off_out < off_in + len)
		return EINVAL;
	if (len && off_out + len > out->size &&
	    (err = file_resize(out, off_out + len)))
		return err;
	/* Whole frames that line up are copied logically; the rest by bytes. */
	head = len;
	full = 0;
	if (off_in % FRAME == off_out % FRAME) {
		head = (FRAME - off_in % FRAME) % FRAME;
		if (head > len)
			head = len;
		full = (len - head) / FRAME;
	}
	err = copy_bytes(in, off_in, out, off_out, head);
	if (!err && full)
		err = copy_error(pm_container_copy(S.pm, in->cont,
						   (off_in + head) / FRAME,
						   out->cont,
						   (off_out + head) / FRAME,
						   (int)full, 0, &fe));
	if (!err)
		err = copy_bytes(in, off_in + head + full * FRAME, out,
				 off_out + head + full * FRAME,
				 len - head - full * FRAME);
	if (err)
		return err;
	if (len) {
		file_changed(out);
		backing_data(out, off_out / FRAME, pmfs_frames(off_out + len) -
							   off_out / FRAME);
	}
	pmfs_put_u64(&r->out, len);
	reply_attr(r, out);
	return 0;
}

static error_t op_statfs(struct req *r)
{
	struct pm_node_info nodes[64];
	struct pm_task_stat ts;
	uint64_t total = 0, avail = 0, mine;
	int n = 64;
	error_t err;

	if ((err = pm_nodes(S.pm, nodes, &n)) || (err = pm_task_stat(S.pm, &ts)))
		return EIO;
	for (int k = 0; k < n; k++)
		if (nodes[k].state == PM_NODE_UP) {
			total += nodes[k].frames_total;
			avail += nodes[k].frames_free;
		}
	/* Files take this server's guaranteed frames. */
	mine = ts.guaranteed > ts.allocated - ts.extra_allocated ?
		       ts.guaranteed - (ts.allocated - ts.extra_allocated) : 0;
	pmfs_put_u64(&r->out, total);
	pmfs_put_u64(&r->out, avail);
	pmfs_put_u64(&r->out, mine < avail ? mine : avail);
	pmfs_put_u64(&r->out, S.icount);
	return 0;
}

static error_t op_setplace(struct req *r)
{
	struct inode *i;
	uint32_t policy, node;
	error_t err;

	if ((err = get_inode(r, &i)))
		return err;
	policy = pmfs_get_u32(&r->in);
	node = pmfs_get_u32(&r->in);
	if (r->in.bad || policy > PM_PLACE_INTERLEAVE || node > UINT16_MAX)
		return EINVAL;
	if (!S_ISREG(i->mode))
		return EINVAL;
	if (i->cont && (err = pm_container_set_policy(S.pm, i->cont, (int)policy,
						      (pm_node_t)node)))
		return err;
	i->policy = (int)policy;
	i->place_node = (pm_node_t)node;
	return 0;
}

static error_t op_info(struct req *r)
{
	struct pm_container_stat st = { 0 };
	struct inode *i;
	char text[256];
	int n;
	error_t err;

	if ((err = get_inode(r, &i)))
		return err;
	if (i->cont && (err = pm_container_stat(S.pm, i->cont, &st)))
		return err;
	n = snprintf(text, sizeof(text),
		     "frames=%lu resident=%lu remote=%lu swapped=%lu cow=%lu "
		     "place=%s:%u version=%lu",
		     (unsigned long)st.frames, (unsigned long)st.resident,
		     (unsigned long)st.remote, (unsigned long)st.swapped,
		     (unsigned long)st.cow,
		     i->policy == PM_PLACE_NODE ? "node" :
		     i->policy == PM_PLACE_INTERLEAVE ? "interleave" : "local",
		     i->place_node, (unsigned long)i->version);
	pmfs_put_str(&r->out, text, (size_t)n);
	return 0;
}

static error_t dispatch(struct req *r, uint16_t op)
{
	if (op != PMFS_HELLO && !r->c->task)
		return EPROTO;
	switch (op) {
	case PMFS_HELLO:    return op_hello(r);
	case PMFS_LOOKUP:   return op_lookup(r);
	case PMFS_GETATTR:  return op_getattr(r);
	case PMFS_SETATTR:  return op_setattr(r);
	case PMFS_MAKE:     return op_make(r);
	case PMFS_UNLINK:   return op_remove(r, false);
	case PMFS_RMDIR:    return op_remove(r, true);
	case PMFS_RENAME:   return op_rename(r);
	case PMFS_READDIR:  return op_readdir(r);
	case PMFS_READLINK: return op_readlink(r);
	case PMFS_OPEN:     return op_open(r);
	case PMFS_RELEASE:  return op_release(r);
	case PMFS_FETCH:    return op_fetch(r);
	case PMFS_COMMIT:   return op_commit(r);
	case PMFS_COPY:     return op_copy(r);
	case PMFS_STATFS:   return op_statfs(r);
	case PMFS_SETPLACE: return op_setplace(r);
	case PMFS_INFO:     return op_info(r);
	default:            return ENOSYS;
	}
}

/* ---- connections ---- */

/* A mount is gone: its opens are given back. */
static void conn_close(size_t k)
{
	struct conn *c = &S.conns[k];

	for (size_t j = 0; j < c->nopen; j++) {
		struct inode *i = inode_find(c->open_ino[j]);

		if (i) {
			i->opens -= c->open_n[j];
			inode_maybe_free(i);
		}
	}
	free(c->open_ino);
	free(c->open_n);
	close(c->fd);
	S.conns[k] = S.conns[--S.nconns];
}

/* One request of connection k; false when the connection must go. */
static bool conn_serve(size_t k)
{
	struct conn *c = &S.conns[k];
	struct pmfs_hdr h;
	struct req r = { .c = c };
	error_t err = pmfs_recv(c->fd, &h, S.in, PMFS_MSG_MAX);

	if (err) {
		if (err != ECONNRESET)
			pmfs_say("a mount's connection: %s; cut off",
			    err == EAGAIN ? "stalled in a message" :
			    err == EPROTO ? "not the pmfs protocol" : strerror(err));
		return false;
	}
	pmfs_buf_reader(&r.in, S.in, h.len);
	pmfs_buf_init(&r.out, S.out, PMFS_MSG_MAX);
	err = dispatch(&r, h.op);
	if (!err && r.out.bad)
		err = EOVERFLOW;
	if (err)
		r.out.len = 0;
	err = pmfs_send(c->fd, h.op, h.seq, err, S.out, (uint32_t)r.out.len);
	return err == 0;
}

static int listen_on(const char *hostport, char *shown, size_t shown_len)
{
	char host[256], port[16];
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE }, *ai;
	struct sockaddr_storage sa;
	socklen_t sl = sizeof(sa);
	int fd, one = 1, r;

	if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host) ||
	    strlen(colon + 1) >= sizeof(port) || !colon[1]) {
		pmfs_say("--listen %s: not HOST:PORT", hostport);
		return -1;
	}
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	strcpy(port, colon + 1);
	if ((r = getaddrinfo(host, port, &hints, &ai))) {
		pmfs_say("--listen %s: %s", hostport, gai_strerror(r));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl)) {
		pmfs_say("--listen %s: %m", hostport);
		freeaddrinfo(ai);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	freeaddrinfo(ai);
	getnameinfo((struct sockaddr *)&sa, sl, host, sizeof(host), port,
		    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(shown, shown_len, strchr(host, ':') ? "[%s]:%s" : "%s:%s",
		 host, port);
	return fd;
}

static void conn_accept(int lfd)
{
	struct timeval tv = { .tv_sec = PMFSD_IO_TIMEOUT_S };
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), one = 1;

	if (fd < 0)
		return;
	if (S.nconns == PMFSD_CONNS_MAX) {
		pmfs_say("a mount connects beyond %d: refused", PMFSD_CONNS_MAX);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	S.conns[S.nconns++] = (struct conn){ .fd = fd };
}

/* ---- loading the backing directory ---- */

static error_t load_file(struct inode *i, int fd, const char *path)
{
	static uint8_t *buf;
	struct stat st;
	uint64_t off = 0;
	error_t err;

	if (!buf && !(buf = malloc(PMFSD_CHUNK)))
		return ENOMEM;
	if (fstat(fd, &st))
		return errno;
	if ((err = file_resize(i, (uint64_t)st.st_size)))
		return err;
	while (off < (uint64_t)st.st_size) {
		ssize_t n = pread(fd, buf, PMFSD_CHUNK, (off_t)off);

		if (n <= 0) {
			pmfs_say("loading %s: %s", path, n ? strerror(errno) : "shorter than its size");
			return EIO;
		}
		if ((err = pm_container_write(S.pm, i->cont, off / FRAME, 0, buf,
					      (size_t)n)))
			return err;
		off += (uint64_t)n;
	}
	return 0;
}

static error_t load_dir(struct inode *dir, const char *path, int depth)
{
	DIR *dp = opendir(path);
	struct dirent *e;
	error_t err = 0;

	if (!dp) {
		pmfs_say("loading %s: %m", path);
		return errno;
	}
	while (!err && (e = readdir(dp))) {
		char sub[PATH_MAX], target[PMFS_TARGET_MAX + 1];
		struct stat st;
		struct inode *i;
		struct dentry *d;
		size_t n = strlen(e->d_name);
		ssize_t tn;
		int fd;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (!pmfs_name_ok(e->d_name, n) ||
		    snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) >=
			    (int)sizeof(sub) || lstat(sub, &st)) {
			pmfs_say("loading %s/%s: skipped", path, e->d_name);
			continue;
		}
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) &&
		    !S_ISLNK(st.st_mode)) {
			pmfs_say("loading %s: not a file, directory or link: skipped", sub);
			continue;
		}
		if (!(i = inode_new(st.st_mode, st.st_uid, st.st_gid)) ||
		    !(d = calloc(1, sizeof(*d))) || !(d->name = strdup(e->d_name))) {
			err = ENOMEM;
			break;
		}
		i->atime = st.st_atim;
		i->mtime = st.st_mtim;
		i->ctime = st.st_ctim;
		d->inode = i;
		dentry_link(dir, d);
		if (S_ISLNK(st.st_mode)) {
			tn = readlink(sub, target, PMFS_TARGET_MAX);
			if (tn <= 0 || !(i->target = strndup(target, (size_t)tn)))
				err = tn <= 0 ? errno : ENOMEM;
		} else if (S_ISDIR(st.st_mode)) {
			err = depth > 256 ? ELOOP : load_dir(i, sub, depth + 1);
		} else if ((fd = open(sub, O_RDONLY | O_CLOEXEC)) < 0) {
			err = errno;
		} else {
			err = load_file(i, fd, sub);
			close(fd);
		}
		if (err)
			pmfs_say("loading %s: %s", sub, strerror(err));
	}
	closedir(dp);
	return err;
}

static void on_signal(int sig)
{
	(void)sig;
	S.stop = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: pmfsd --socket PMD_SOCKET --listen HOST:PORT "
			"[--backing DIR]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "backing", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *sock = NULL, *listen_at = NULL;
	struct pollfd pfd[PMFSD_CONNS_MAX + 1];
	struct sigaction sa = { .sa_handler = on_signal };
	char shown[300];
	struct stat st;
	int lfd, o;
	error_t err;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 's': sock = optarg; break;
		case 'l': listen_at = optarg; break;
		case 'b': S.backing = optarg; break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if (optind < argc || !sock || !listen_at) {
		if (optind < argc)
			pmfs_say("unexpected argument '%s'", argv[optind]);
		usage();
		return 2;
	}
	if (S.backing && (stat(S.backing, &st) || !S_ISDIR(st.st_mode))) {
		pmfs_say("--backing %s: %s", S.backing,
		    errno && !S_ISDIR(st.st_mode) ? strerror(errno) : "not a directory");
		return 1;
	}
	if ((err = pm_connect(sock, &S.pm)) || (err = pm_self(S.pm, &S.task))) {
		pmfs_say("connecting to the pmd at %s: %s", sock, strerror(err));
		return 1;
	}
	S.isize = S.dsize = 1024;
	S.itab = calloc(S.isize, sizeof(*S.itab));
	S.dtab = calloc(S.dsize, sizeof(*S.dtab));
	S.in = malloc(PMFS_MSG_MAX);
	S.out = malloc(PMFS_MSG_MAX);
	if (!S.itab || !S.dtab || !S.in || !S.out) {
		pmfs_say("out of memory");
		return 1;
	}
	if (getrandom(&S.generation, sizeof(S.generation), 0) != sizeof(S.generation))
		S.generation = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
	S.next_ino = PMFS_ROOT_INO;
	S.root = inode_new(S_IFDIR | 0755, getuid(), getgid());
	if (S.backing && (err = load_dir(S.root, S.backing, 0))) {
		pmfs_say("--backing %s: the tree could not be loaded: %s", S.backing,
		    strerror(err));
		pm_disconnect(S.pm);
		return 1;
	}
	if ((lfd = listen_on(listen_at, shown, sizeof(shown))) < 0) {
		pm_disconnect(S.pm);
		return 1;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	printf("pmfsd: serving on %s (task %#lx%s%s, %zu files)\n", shown,
	       (unsigned long)S.task, S.backing ? ", backing " : "",
	       S.backing ? S.backing : "", S.icount);
	fflush(stdout);
	while (!S.stop) {
		pfd[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (size_t k = 0; k < S.nconns; k++)
			pfd[k + 1] = (struct pollfd){ .fd = S.conns[k].fd,
						      .events = POLLIN };
		if (poll(pfd, S.nconns + 1, -1) < 0)
			continue;     /* EINTR: a signal, seen above */
		/* From the last: a closed connection is replaced by the last. */
		for (size_t k = S.nconns; k-- > 0;)
			if (pfd[k + 1].revents && !conn_serve(k))
				conn_close(k);
		if (pfd[0].revents & POLLIN)
			conn_accept(lfd);
	}
	while (S.nconns)
		conn_close(S.nconns - 1);
	close(lfd);
	pm_disconnect(S.pm);
	pmfs_say("stopped");
	return 0;
}
