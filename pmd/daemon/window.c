/*
 * window.c - a session's I/O window: 64 KiB of shared memory (a memfd
 * sealed against resizing, so the task cannot pull it from under the
 * pmd) through which its reads and writes pass their bytes, registered
 * with the fabric so that remote frames are read and written by RDMA
 * straight to and from it, and so that the home of a forwarded read or
 * write fills or reads it by RDMA (forward.c). Held by its session and by
 * each remote read or write in flight through it, so a task that leaves
 * mid-read does not pull it from under the RDMA.
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
		err = pmd_cluster_mr_remote(srv->cluster, w->base, PM_IO_MAX,
					    &w->mr, &w->rk);
	if (err) {
		pmd_warn("an I/O window: %s", strerror(err));
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
	munmap(w->base, PM_IO_MAX);
	close(w->fd);
	free(w);
}
