/*
 * pm-bench-fusepass: the FUSE-cost baseline of the pmfs benchmark. A
 * low-level libfuse file system that passes every operation through to a
 * source directory (a tmpfs directory in the benchmark), so that fio on
 * it measures what FUSE itself costs, and fio on pmfs what pmfs adds.
 *
 * It pays the same FUSE costs as pmfs because it is set up the same way:
 * the low-level API, fuse_session_loop_mt() with clone_fd 0 and at most
 * 10 idle threads, entry and attribute timeouts of 0, the mount options
 * default_permissions,fsname=fusepass,subtype=fusepass, open and create
 * replies with keep_cache 0 and no direct_io, no writeback cache (every
 * other capability at libfuse's default), reads answered with
 * fuse_reply_data() from an fd buffer of the source file (splice), writes
 * with pwrite() and fuse_reply_write().
 *
 * Every inode the kernel knows of is an entry in a table keyed by the
 * source file's (st_dev, st_ino), holding an O_PATH descriptor of it and
 * the kernel's lookup count; the node id is the entry's address, and
 * FUSE_ROOT_ID is the source directory. Operations on an inode go through
 * its descriptor (the *at() calls, AT_EMPTY_PATH or /proc/self/fd/N).
 *
 * Usage: pm-bench-fusepass SOURCE_DIR MOUNTPOINT [-f] [-o OPTS]
 * Without -f it forks: the parent exits 0 once the child has mounted and
 * serves, non-zero (with a message) if mounting fails. Unmount with
 * fusermount3 -u MOUNTPOINT; SIGTERM and SIGINT unmount too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#define FUSE_USE_VERSION 34

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#define PROG "pm-bench-fusepass"
#define MOUNT_OPTS "default_permissions,fsname=fusepass,subtype=fusepass"

/* The FUSE callbacks have a fixed signature; not all use every argument. */
#pragma GCC diagnostic ignored "-Wunused-parameter"

/* One inode the kernel holds a node id for. */
struct fp_inode {
	struct fp_inode *next;	/* (L) hash chain */
	dev_t dev;		/* source file's st_dev and st_ino: the key */
	ino_t ino;
	int fd;			/* O_PATH descriptor of the source file */
	uint64_t nlookup;	/* (L) lookups not yet forgotten */
};

/* An open directory: readdir() resumes where the last reply stopped. */
struct fp_dir {
	DIR *dp;
	struct dirent *entry;	/* read but not yet sent, or NULL */
	off_t offset;		/* offset of the next entry to send */
};

/* (L) fields are under lock. The root is not in the table. */
struct fp_fs {
	pthread_mutex_t lock;
	struct fp_inode **buckets;	/* (L) */
	size_t nbuckets;		/* (L) a power of two */
	size_t count;			/* (L) */
	struct fp_inode root;
	uid_t uid;			/* who we run as */
	gid_t gid;
};

static struct fp_fs fs = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

static struct fp_inode *fp_inode_of(fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &fs.root;
	return (struct fp_inode *)(uintptr_t)ino;
}

static int fp_fd_of(struct fuse_file_info *fi)
{
	return (int)fi->fh;
}

static struct fp_dir *fp_dir_of(struct fuse_file_info *fi)
{
	return (struct fp_dir *)(uintptr_t)fi->fh;
}

static void fp_proc_path(char *buf, size_t size, int fd)
{
	snprintf(buf, size, "/proc/self/fd/%d", fd);
}

/* The inode table: a chained hash that doubles as it fills. */

static size_t fp_hash(dev_t dev, ino_t ino, size_t nbuckets)
{
	uint64_t h = ((uint64_t)ino ^ ((uint64_t)dev << 32)) *
		     0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 32) & (nbuckets - 1);
}

static int fp_table_init(void)
{
	fs.nbuckets = 1024;
	fs.buckets = calloc(fs.nbuckets, sizeof(*fs.buckets));
	return fs.buckets ? 0 : -1;
}

/* Called with fs.lock held. On no memory the chains just get longer. */
static void fp_table_grow(void)
{
	size_t n = fs.nbuckets * 2;
	struct fp_inode **b = calloc(n, sizeof(*b));
	size_t i;

	if (!b)
		return;
	for (i = 0; i < fs.nbuckets; i++) {
		struct fp_inode *in = fs.buckets[i], *next;

		for (; in; in = next) {
			size_t h = fp_hash(in->dev, in->ino, n);

			next = in->next;
			in->next = b[h];
			b[h] = in;
		}
	}
	free(fs.buckets);
	fs.buckets = b;
	fs.nbuckets = n;
}

/*
 * Count one lookup of the file open at fd (O_PATH), whose attributes are
 * st: the entry already in the table if there is one (fd is then closed),
 * else a new entry that takes fd. Returns NULL (fd closed) on no memory.
 */
static struct fp_inode *fp_table_ref(int fd, const struct stat *st)
{
	struct fp_inode *in, *fresh = malloc(sizeof(*fresh));
	size_t h;

	pthread_mutex_lock(&fs.lock);
	h = fp_hash(st->st_dev, st->st_ino, fs.nbuckets);
	for (in = fs.buckets[h]; in; in = in->next)
		if (in->dev == st->st_dev && in->ino == st->st_ino)
			break;
	if (in) {
		in->nlookup++;
		pthread_mutex_unlock(&fs.lock);
		free(fresh);
		close(fd);
		return in;
	}
	if (!fresh) {
		pthread_mutex_unlock(&fs.lock);
		close(fd);
		return NULL;
	}
	fresh->dev = st->st_dev;
	fresh->ino = st->st_ino;
	fresh->fd = fd;
	fresh->nlookup = 1;
	fresh->next = fs.buckets[h];
	fs.buckets[h] = fresh;
	if (++fs.count > fs.nbuckets)
		fp_table_grow();
	pthread_mutex_unlock(&fs.lock);
	return fresh;
}

/* Forget n lookups of in; the last one drops the entry. */
static void fp_table_unref(struct fp_inode *in, uint64_t n)
{
	struct fp_inode **p;

	if (in == &fs.root)
		return;
	pthread_mutex_lock(&fs.lock);
	if (n < in->nlookup) {
		in->nlookup -= n;
		pthread_mutex_unlock(&fs.lock);
		return;
	}
	p = &fs.buckets[fp_hash(in->dev, in->ino, fs.nbuckets)];
	while (*p != in)
		p = &(*p)->next;
	*p = in->next;
	fs.count--;
	pthread_mutex_unlock(&fs.lock);
	close(in->fd);
	free(in);
}

/* Look name up in dir and fill e, counting one lookup. Returns an errno. */
static int fp_lookup_entry(struct fp_inode *dir, const char *name,
			   struct fuse_entry_param *e)
{
	struct fp_inode *in;
	int fd, err;

	memset(e, 0, sizeof(*e));
	fd = openat(dir->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) {
		err = errno;
		close(fd);
		return err;
	}
	in = fp_table_ref(fd, &e->attr);
	if (!in)
		return ENOMEM;
	e->ino = (fuse_ino_t)(uintptr_t)in;
	e->attr_timeout = 0;
	e->entry_timeout = 0;
	return 0;
}

/*
 * A file we created is ours; give it to the caller, as a kernel file
 * system would (the group of a set-group-ID directory stays).
 */
static void fp_give_to_caller(fuse_req_t req, struct fp_inode *dir,
			      const char *name)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t gid = ctx->gid;
	struct stat st;

	if (ctx->uid == fs.uid && ctx->gid == fs.gid)
		return;
	if (!fstatat(dir->fd, "", &st, AT_EMPTY_PATH) &&
	    (st.st_mode & S_ISGID))
		gid = (gid_t)-1;
	if (fchownat(dir->fd, name, ctx->uid, gid, AT_SYMLINK_NOFOLLOW))
		fuse_log(FUSE_LOG_DEBUG, "chown %s: %s\n", name,
			 strerror(errno));
}

/* Reply to a request that made name in dir: the entry, or the error. */
static void fp_reply_made(fuse_req_t req, struct fp_inode *dir,
			  const char *name, int res)
{
	struct fuse_entry_param e;
	int err;

	if (res < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	fp_give_to_caller(req, dir, name);
	err = fp_lookup_entry(dir, name, &e);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void fp_init(void *userdata, struct fuse_conn_info *conn)
{
	/* libfuse's default capabilities: no writeback cache. */
}

static void fp_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err = fp_lookup_entry(fp_inode_of(parent), name, &e);

	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void fp_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fp_table_unref(fp_inode_of(ino), nlookup);
	fuse_reply_none(req);
}

static void fp_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	size_t i;

	for (i = 0; i < count; i++)
		fp_table_unref(fp_inode_of(forgets[i].ino),
			       forgets[i].nlookup);
	fuse_reply_none(req);
}

static void fp_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct stat st;

	if (fstatat(fp_inode_of(ino)->fd, "", &st,
		    AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, 0);
}

static void fp_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct fp_inode *in = fp_inode_of(ino);
	int fd = fi ? fp_fd_of(fi) : -1;
	char path[64];
	int res;

	fp_proc_path(path, sizeof(path), in->fd);
	if (to_set & FUSE_SET_ATTR_MODE) {
		if (fd >= 0)
			res = fchmod(fd, attr->st_mode);
		else
			res = chmod(path, attr->st_mode);
		if (res)
			goto fail;
	}
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid :
							   (uid_t)-1;
		gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid :
							   (gid_t)-1;

		if (fchownat(in->fd, "", uid, gid,
			     AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW))
			goto fail;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (fd >= 0)
			res = ftruncate(fd, attr->st_size);
		else
			res = truncate(path, attr->st_size);
		if (res)
			goto fail;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec tv[2] = {
			{ .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT },
		};

		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			tv[0] = attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			tv[1] = attr->st_mtim;
		if (fd >= 0)
			res = futimens(fd, tv);
		else
			res = utimensat(AT_FDCWD, path, tv, 0);
		if (res)
			goto fail;
	}
	fp_getattr(req, ino, fi);
	return;
fail:
	fuse_reply_err(req, errno);
}

static void fp_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = readlinkat(fp_inode_of(ino)->fd, "", buf, sizeof(buf));

	if (n < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	if ((size_t)n == sizeof(buf)) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	buf[n] = '\0';
	fuse_reply_readlink(req, buf);
}

static void fp_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct fp_inode *dir = fp_inode_of(parent);

	fp_reply_made(req, dir, name, mknodat(dir->fd, name, mode, rdev));
}

static void fp_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct fp_inode *dir = fp_inode_of(parent);

	fp_reply_made(req, dir, name, mkdirat(dir->fd, name, mode));
}

static void fp_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	struct fp_inode *dir = fp_inode_of(parent);

	fp_reply_made(req, dir, name, symlinkat(link, dir->fd, name));
}

static void fp_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct fp_inode *dir = fp_inode_of(newparent);
	struct fuse_entry_param e;
	char path[64];
	int err;

	fp_proc_path(path, sizeof(path), fp_inode_of(ino)->fd);
	if (linkat(AT_FDCWD, path, dir->fd, newname, AT_SYMLINK_FOLLOW)) {
		fuse_reply_err(req, errno);
		return;
	}
	err = fp_lookup_entry(dir, newname, &e);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

static void fp_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int res = unlinkat(fp_inode_of(parent)->fd, name, 0);

	fuse_reply_err(req, res ? errno : 0);
}

static void fp_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	int res = unlinkat(fp_inode_of(parent)->fd, name, AT_REMOVEDIR);

	fuse_reply_err(req, res ? errno : 0);
}

static void fp_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	int res;

	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	res = renameat(fp_inode_of(parent)->fd, name,
		       fp_inode_of(newparent)->fd, newname);
	fuse_reply_err(req, res ? errno : 0);
}

static void fp_open(fuse_req_t req, fuse_ino_t ino,
		    struct fuse_file_info *fi)
{
	char path[64];
	int fd;

	fp_proc_path(path, sizeof(path), fp_inode_of(ino)->fd);
	fd = open(path, (fi->flags & ~O_NOFOLLOW) | O_CLOEXEC);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	/*
	 * As pmfs: page cache dropped on open, no direct I/O, and (where
	 * libfuse has it) parallel_direct_writes left 0.
	 */
	fi->fh = (uint64_t)fd;
	fi->keep_cache = 0;
	fi->direct_io = 0;
	if (fuse_reply_open(req, fi))
		close(fd);
}

static void fp_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct fp_inode *dir = fp_inode_of(parent);
	struct fuse_entry_param e;
	int fd, err;

	fd = openat(dir->fd, name,
		    (fi->flags & ~O_NOFOLLOW) | O_CREAT | O_CLOEXEC, mode);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	fp_give_to_caller(req, dir, name);
	err = fp_lookup_entry(dir, name, &e);
	if (err) {
		close(fd);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uint64_t)fd;
	fi->keep_cache = 0;
	fi->direct_io = 0;
	fuse_reply_create(req, &e, fi);
}

static void fp_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);

	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = fp_fd_of(fi);
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void fp_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t n = pwrite(fp_fd_of(fi), buf, size, off);

	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_write(req, (size_t)n);
}

static void fp_flush(fuse_req_t req, fuse_ino_t ino,
		     struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void fp_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	close(fp_fd_of(fi));
	fuse_reply_err(req, 0);
}

static void fp_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	int res = datasync ? fdatasync(fp_fd_of(fi)) : fsync(fp_fd_of(fi));

	fuse_reply_err(req, res ? errno : 0);
}

static void fp_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct fp_dir *d = calloc(1, sizeof(*d));
	int fd, err;

	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fd = openat(fp_inode_of(ino)->fd, ".",
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		goto fail;
	d->dp = fdopendir(fd);
	if (!d->dp) {
		err = errno;
		close(fd);
		errno = err;
		goto fail;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(req, fi)) {
		closedir(d->dp);
		free(d);
	}
	return;
fail:
	err = errno;
	free(d);
	fuse_reply_err(req, err);
}

static void fp_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
		       off_t off, struct fuse_file_info *fi)
{
	struct fp_dir *d = fp_dir_of(fi);
	char *buf = malloc(size);
	size_t pos = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off != d->offset) {
		seekdir(d->dp, off);
		d->entry = NULL;
		d->offset = off;
	}
	for (;;) {
		struct stat st;
		size_t len;

		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				if (errno && !pos) {
					free(buf);
					fuse_reply_err(req, errno);
					return;
				}
				break;
			}
		}
		memset(&st, 0, sizeof(st));
		st.st_ino = d->entry->d_ino;
		st.st_mode = (mode_t)d->entry->d_type << 12;
		len = fuse_add_direntry(req, buf + pos, size - pos,
					d->entry->d_name, &st,
					d->entry->d_off);
		if (len > size - pos)
			break;
		pos += len;
		d->offset = d->entry->d_off;
		d->entry = NULL;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void fp_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct fp_dir *d = fp_dir_of(fi);

	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

static void fp_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	if (fstatvfs(fp_inode_of(ino)->fd, &sv))
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

static void fp_fallocate(fuse_req_t req, fuse_ino_t ino, int mode,
			 off_t offset, off_t length,
			 struct fuse_file_info *fi)
{
	int res = fallocate(fp_fd_of(fi), mode, offset, length);

	fuse_reply_err(req, res ? errno : 0);
}

static void fp_copy_file_range(fuse_req_t req, fuse_ino_t ino_in,
			       off_t off_in, struct fuse_file_info *fi_in,
			       fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len,
			       int flags)
{
	loff_t in = off_in, out = off_out;
	ssize_t n;

	n = copy_file_range(fp_fd_of(fi_in), &in, fp_fd_of(fi_out), &out,
			    len, (unsigned int)flags);
	if (n < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_write(req, (size_t)n);
}

static const struct fuse_lowlevel_ops fp_ops = {
	.init = fp_init,
	.lookup = fp_lookup,
	.forget = fp_forget,
	.forget_multi = fp_forget_multi,
	.getattr = fp_getattr,
	.setattr = fp_setattr,
	.readlink = fp_readlink,
	.mknod = fp_mknod,
	.mkdir = fp_mkdir,
	.symlink = fp_symlink,
	.link = fp_link,
	.unlink = fp_unlink,
	.rmdir = fp_rmdir,
	.rename = fp_rename,
	.open = fp_open,
	.create = fp_create,
	.read = fp_read,
	.write = fp_write,
	.flush = fp_flush,
	.release = fp_release,
	.fsync = fp_fsync,
	.opendir = fp_opendir,
	.readdir = fp_readdir,
	.releasedir = fp_releasedir,
	.statfs = fp_statfs,
	.fallocate = fp_fallocate,
	.copy_file_range = fp_copy_file_range,
};

static void usage(void)
{
	fprintf(stderr,
		"usage: " PROG " SOURCE_DIR MOUNTPOINT [-f] [-o OPTS]\n");
	exit(2);
}

/* Tell the waiting parent how the mount went (0: serving), if any. */
static void report(int fd, char status)
{
	if (fd < 0)
		return;
	if (write(fd, &status, 1) != 1)
		perror(PROG ": report to parent");
	close(fd);
}

/* Without -f: fork; the parent waits for the child's report and exits. */
static int daemonize(void)
{
	int p[2], status;
	pid_t pid;
	char c;

	if (pipe2(p, O_CLOEXEC)) {
		perror(PROG ": pipe");
		exit(1);
	}
	pid = fork();
	if (pid < 0) {
		perror(PROG ": fork");
		exit(1);
	}
	if (pid) {
		close(p[1]);
		if (read(p[0], &c, 1) == 1 && c == 0)
			exit(0);
		waitpid(pid, &status, 0);
		fprintf(stderr, PROG ": the file system did not start\n");
		exit(1);
	}
	close(p[0]);
	setsid();
	return p[1];
}

/* The child serves on: no terminal, no hold on the working directory. */
static void detach(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (chdir("/"))
		perror(PROG ": chdir /");
	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

int main(int argc, char **argv)
{
	struct fuse_loop_config loop = {
		.clone_fd = 0,
		.max_idle_threads = 10,
	};
	const char *pos[2] = { NULL, NULL };
	char *opts = NULL, *src, *mnt;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se;
	struct rlimit rl;
	int foreground = 0, npos = 0, report_fd = -1, i, ret;
	struct stat st;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-f")) {
			foreground = 1;
		} else if (!strncmp(argv[i], "-o", 2)) {
			const char *o = argv[i][2] ? argv[i] + 2 : argv[++i];
			char *more;

			if (!o)
				usage();
			if (asprintf(&more, "%s,%s", opts ? opts : "", o) < 0)
				exit(1);
			free(opts);
			opts = more;
		} else if (argv[i][0] == '-' || npos == 2) {
			usage();
		} else {
			pos[npos++] = argv[i];
		}
	}
	if (npos != 2)
		usage();

	src = realpath(pos[0], NULL);
	mnt = realpath(pos[1], NULL);
	if (!src || !mnt) {
		fprintf(stderr, PROG ": %s: %s\n", src ? pos[1] : pos[0],
			strerror(errno));
		return 1;
	}
	fs.root.fd = open(src, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fs.root.fd < 0 || fstat(fs.root.fd, &st)) {
		fprintf(stderr, PROG ": %s: %s\n", src, strerror(errno));
		return 1;
	}
	fs.root.dev = st.st_dev;
	fs.root.ino = st.st_ino;
	fs.root.nlookup = 1;
	/* Each inode the kernel holds keeps a descriptor open: allow many. */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	fs.uid = geteuid();
	fs.gid = getegid();
	if (fp_table_init()) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}

	if (!foreground)
		report_fd = daemonize();
	/* Modes come already masked by the kernel: do not mask them again. */
	umask(0);

	if (fuse_opt_add_arg(&args, argv[0]) ||
	    fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, MOUNT_OPTS) ||
	    (opts && (fuse_opt_add_arg(&args, "-o") ||
		      fuse_opt_add_arg(&args, opts + 1)))) {
		fprintf(stderr, PROG ": out of memory\n");
		report(report_fd, 1);
		return 1;
	}

	se = fuse_session_new(&args, &fp_ops, sizeof(fp_ops), &fs);
	if (!se) {
		fprintf(stderr, PROG ": bad options\n");
		report(report_fd, 1);
		return 1;
	}
	/*
	 * libfuse leaves ignored signals ignored, and a shell's background
	 * job ignores SIGINT: take both back so that either ends the loop.
	 */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (fuse_set_signal_handlers(se)) {
		fprintf(stderr, PROG ": cannot set signal handlers\n");
		report(report_fd, 1);
		return 1;
	}
	if (fuse_session_mount(se, mnt)) {
		fprintf(stderr, PROG ": cannot mount on %s\n", mnt);
		report(report_fd, 1);
		return 1;
	}
	if (!foreground) {
		detach();
		report(report_fd, 0);
	}

	ret = fuse_session_loop_mt(se, &loop);

	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	free(opts);
	free(src);
	free(mnt);
	/* A signal that ended the loop (ret > 0) is a normal end. */
	return ret < 0 ? 1 : 0;
}
