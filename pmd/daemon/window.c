/*
 * window.c - a session's I/O window: 64 KiB of shared memory (a memfd
 * sealed against resizing, so the task cannot pull it from under the
 * pmd) through which its reads and writes pass their bytes, registered
 * with the fabric so that remote frames are read and written by RDMA
 * straight to and from it, and (a second registration) so that the home
 * of a forwarded read or write fills or reads it by RDMA (forward.c).
 * Held by its session and by each remote read or write in flight
 * through it, so a task that leaves mid-read does not pull it from
 * under the RDMA.
 *
 * Retirement. An RDMA through a window that failed may still happen
 * later: a late read lands in it, a late write (or a home's late fetch)
 * reads whatever it holds then. Such a window is retired: the session
 * drops it before its next request, which, if it names the window, is
 * answered PM_ST_WINDOW_GONE (nothing done; the library sends the bytes
 * in the messages and asks for a new window); the pmd keeps its mapping
 * until the provider lets go, and a window that other nodes reach loses
 * that registration at once. So a late transfer only ever meets memory
 * that no request uses any more.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

error_t pmd_window_create(struct pmd_server *srv, struct pmd_window **w_out)
{
	struct pmd_window *w = calloc(1, sizeof(*w));
	error_t err = 0;

	if (!w)
		return ENOMEM;
	w->base = MAP_FAILED;
	w->fd = memfd_create("pm-window", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (w->fd < 0 || ftruncate(w->fd, PM_IO_MAX) < 0 ||
	    fcntl(w->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
				      F_SEAL_SEAL) < 0 ||
	    (w->base = mmap(NULL, PM_IO_MAX, PROT_READ | PROT_WRITE, MAP_SHARED,
			    w->fd, 0)) == MAP_FAILED)
		err = errno;
	if (!err && srv->cluster)
		err = pmd_cluster_mr(srv->cluster, w->base, PM_IO_MAX, &w->mr);
	if (!err && srv->cluster)
		err = pmd_cluster_mr_remote(srv->cluster, w->base, PM_IO_MAX,
					    &w->rmr, &w->rk);
	if (err) {
		pmd_warn("an I/O window: %s", strerror(err));
		if (w->mr)
			pmd_cluster_mr_drop(w->mr);
		if (w->base != MAP_FAILED)
			munmap(w->base, PM_IO_MAX);
		if (w->fd >= 0)
			close(w->fd);
		free(w);
		return ENOMEM;
	}
	w->refs = 1;
	*w_out = w;
	return 0;
}

void pmd_window_put(struct pmd_window *w)
{
	if (!w || --w->refs)
		return;
	if (w->mr)
		pmd_cluster_mr_drop(w->mr);
	if (w->rmr)
		pmd_cluster_mr_drop(w->rmr);
	munmap(w->base, PM_IO_MAX);
	close(w->fd);
	free(w);
}

void pmd_window_retire(struct pmd_window *w, bool fence)
{
	w->retired = true;
	if (fence && w->rmr) {
		pmd_cluster_mr_drop(w->rmr);
		w->rmr = NULL;
	}
}

void pmd_window_keep(void *arg, enum pmd_keep what)
{
	struct pmd_window *w = arg;

	switch (what) {
	case PMD_KEEP_HELD:
		w->refs++;
		pmd_window_retire(w, false);
		break;
	case PMD_KEEP_CLOSING:
		pmd_window_retire(w, true);
		if (w->mr)
			pmd_cluster_mr_abandon(w->mr);
		w->mr = NULL;
		break;
	case PMD_KEEP_RELEASED:
		pmd_window_put(w);
		break;
	}
}

void pmd_window_check(struct pmd_session *s)
{
	if (s->win && s->win->retired) {
		pmd_window_put(s->win);
		s->win = NULL;
		s->win_gone = true;
	}
}

error_t pmd_window_usable(const struct pmd_session *s, uint32_t io_flags)
{
	if (!(io_flags & PM_IO_WINDOW) || s->win)
		return 0;
	return s->win_gone ? EBADFD : EPROTO;
}
