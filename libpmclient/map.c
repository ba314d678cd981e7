/*
 * map.c - maps through the pmd, in requests of map_max frames: when the
 * first answer covers the whole range and the view then shows it as the
 * fast path wants it (a page-in, a copy broken), the fast path's address;
 * else a region of address space reserved, then each run of slots the
 * pmd answers mapped MAP_FIXED from its segment (whose descriptor comes
 * once per segment); and unmap.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client.h"

/* Whether a MAP reply (len bytes, nfds descriptors) is one for count
 * frames. */
static bool map_reply_ok(const struct pm_map_rep *rep, uint32_t len,
			 uint32_t nfds, uint32_t count)
{
	return len >= sizeof(*rep) && rep->nruns <= PM_MAP_MAX &&
	       rep->nsegs <= PM_MAP_FDS_MAX &&
	       len == sizeof(*rep) + rep->nruns * sizeof(struct pm_map_run) +
		      rep->nsegs * sizeof(uint64_t) &&
	       rep->view_fd <= 1 && nfds == rep->nsegs + rep->view_fd &&
	       rep->done != 0 && rep->done <= count;
}

/* Takes the container's view and the segments' descriptors the reply
 * brought (fds[i] is -1 once taken); the rest are closed on error. */
static error_t map_take_fds(struct pm *pm, container_t c,
			    const struct pm_map_rep *rep, int *fds,
			    uint32_t nfds)
{
	const struct pm_map_run *runs = (const struct pm_map_run *)(rep + 1);
	const uint8_t *ids = (const uint8_t *)(runs + rep->nruns);

	if (rep->view) {
		struct pmc_view *v = pmc_view_add(pm, rep->view, rep->view_fd ?
						  fds[rep->nsegs] : -1);
		if (rep->view_fd)
			fds[rep->nsegs] = -1;
		pmc_hview_set(pm, c, v);
	}
	for (uint32_t i = 0; i < rep->nsegs; i++) {
		uint64_t id;
		error_t err;

		memcpy(&id, ids + i * sizeof(id), sizeof(id));
		err = pmc_seg_add(pm, id, fds[i]);
		fds[i] = -1;
		if (err) {
			pmc_close_fds(fds + i + 1, nfds - i - 1);
			return err;
		}
	}
	return 0;
}

/* Our descriptor of segment seg, or -1. The fault thread may have it: a
 * moved frame's new segment comes to it, not to this session. */
static int map_seg_fd(struct pm *pm, uint64_t seg)
{
	struct pmc_seg *g = pmc_seg_get(pm, seg);
	int fd;

	if (!g) {
		fd = pmc_follow_seg_dup(&pm->follow, seg);
		if (fd >= 0 && !pmc_seg_add(pm, seg, fd))
			g = pmc_seg_get(pm, seg);
	}
	return g ? g->fd : -1;
}

static int run_prot(const struct pm_map_run *run)
{
	return PROT_READ | ((run->prot & CONT_MAP_WRITE) ? PROT_WRITE : 0);
}

/* Maps the reply's runs into region, registered (once, whole) to follow
 * their frames. EPROTO when they do not cover rep->done frames. */
static error_t map_runs(struct pm *pm, container_t c, frame_t start,
			const struct pm_map_rep *rep, uint8_t *region)
{
	const struct pm_map_run *runs = (const struct pm_map_run *)(rep + 1);
	uint64_t covered = 0;
	error_t err;

	for (uint32_t i = 0; i < rep->nruns; i++) {
		const struct pm_map_run *run = &runs[i];
		int fd = map_seg_fd(pm, run->segment);

		if (fd < 0 || run->nframes == 0 ||
		    covered + run->nframes > rep->done)
			return EPROTO;
		if (mmap(region + covered * PM_FRAME_SIZE,
			 (size_t)run->nframes * PM_FRAME_SIZE, run_prot(run),
			 MAP_SHARED | MAP_FIXED, fd,
			 (off_t)run->slot * PM_FRAME_SIZE) == MAP_FAILED)
			return errno;
		covered += run->nframes;
	}
	if (covered != rep->done)
		return EPROTO;
	err = pmc_follow_register(&pm->follow, region,
				  (size_t)covered * PM_FRAME_SIZE);
	covered = 0;
	for (uint32_t i = 0; i < rep->nruns && !err; i++) {
		err = pmc_follow_note(&pm->follow,
				      region + covered * PM_FRAME_SIZE,
				      (size_t)runs[i].nframes * PM_FRAME_SIZE,
				      runs[i].segment, runs[i].slot,
				      run_prot(&runs[i]), c, start + covered);
		covered += runs[i].nframes;
	}
	return err;
}

/* Frames a MAP through the ring may ask for: its answer (runs, no
 * descriptor) fits a slot. */
#define RING_MAP_MAX ((PM_RING_MSG_MAX - PM_REPLY_HDR - \
		       sizeof(struct pm_map_rep)) / sizeof(struct pm_map_run))

/* Asks for frames start..: one MAP exchange, its answer in pm->tx (*rep)
 * with the descriptors it brought taken. Must hold pm->lock. */
static error_t map_ask(struct pm *pm, container_t c, frame_t start,
		       uint32_t count, int flags,
		       const struct pm_map_rep **repp)
{
	struct pm_map_req req = { .handle = c, .start = start, .count = count,
				  .flags = (uint32_t)flags };
	int fds[PM_MAP_FDS_MAX + 1];
	struct pmc_rpc r = { .type = PM_MSG_MAP, .req = &req,
			     .req_len = sizeof(req), .body = pm->tx,
			     .body_max = sizeof(pm->tx), .fds = fds,
			     .fds_max = PM_MAP_FDS_MAX + 1 };
	const struct pm_map_rep *rep = (const struct pm_map_rep *)pm->tx;
	error_t err;

	/* The reply body lands in tx, free once the request is sent. */
	static_assert(sizeof(((struct pm *)0)->tx) >= PM_MSG_MAX, "tx size");
	/* Through the ring when its answer fits a slot (the pmd sends it to
	 * the socket if it brings descriptors). */
	err = PMC_USE_SOCKET;
	if (count <= RING_MAP_MAX) {
		struct pmc_rpc q = r;

		q.fds = NULL;
		q.fds_max = 0;
		q.body_max = (uint32_t)(sizeof(*rep) +
					count * sizeof(struct pm_map_run));
		err = pmc_ring_call(pm, &q);
		r.body_len = q.body_len;
		r.nfds = 0;
	}
	if (err == PMC_USE_SOCKET)
		err = pmc_rpc(pm, &r);
	if (err)
		return err;
	if (!map_reply_ok(rep, r.body_len, r.nfds, count)) {
		pmc_close_fds(fds, r.nfds);
		err = EPROTO;
	}
	if (!err)
		err = map_take_fds(pm, c, rep, fds, r.nfds);
	*repp = rep;
	return err;
}

/* The stream cannot be trusted any more after an answer that makes no
 * sense. */
static error_t map_broken(struct pm *pm, error_t err)
{
	if (err == EPROTO)
		__atomic_store_n(&pm->broken, true, __ATOMIC_RELAXED);
	return err;
}

error_t pm_container_map(pm_t *pm, container_t container, frame_t start,
			 int nr_frames, int flags, void **addr, int *granted)
{
	uint32_t got = CONT_MAP_READ | CONT_MAP_WRITE | CONT_MAP_FORCE_WRITE;
	uint64_t mapped = 0;
	size_t size;
	uint8_t *region = MAP_FAILED;
	error_t err = 0;

	if (!pm || !addr || nr_frames <= 0)
		return EINVAL;
	if (start > UINT64_MAX - (uint64_t)(nr_frames - 1))
		return EINVAL;
	if (pm->fastpath &&
	    pmc_map_fast(pm, container, start, nr_frames, flags, addr, granted))
		return 0;
	size = (size_t)nr_frames * PM_FRAME_SIZE;

	pthread_mutex_lock(&pm->lock);
	while (mapped < (uint64_t)nr_frames) {
		uint64_t left = (uint64_t)nr_frames - mapped;
		uint32_t chunk = left > pm->map_max ? pm->map_max : (uint32_t)left;
		const struct pm_map_rep *rep;

		err = map_broken(pm, map_ask(pm, container, start + mapped,
					     chunk, flags, &rep));
		if (err)
			break;
		/* The pmd made every frame resident and physical (paged in,
		 * a copy broken): a whole answer in one exchange is then
		 * the fast path's, a pointer into the segment we hold, with
		 * no address space of its own to make, register or unmap. */
		if (region == MAP_FAILED && pm->fastpath &&
		    rep->done == (uint32_t)nr_frames &&
		    pmc_map_fast(pm, container, start, nr_frames, flags, addr,
				 granted)) {
			pthread_mutex_unlock(&pm->lock);
			return 0;
		}
		if (region == MAP_FAILED) {
			region = mmap(NULL, size, PROT_NONE, MAP_PRIVATE |
				      MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (region == MAP_FAILED) {
				err = errno;
				break;
			}
		}
		err = map_broken(pm, map_runs(pm, container, start + mapped, rep,
					      region + mapped * PM_FRAME_SIZE));
		if (err)
			break;
		got &= rep->granted;
		mapped += rep->done;
	}
	pthread_mutex_unlock(&pm->lock);
	if (err) {
		if (region != MAP_FAILED) {
			pmc_follow_forget(&pm->follow, region, size);
			munmap(region, size);
		}
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
	if (pmc_in_segment_view(pm, addr))
		return 0;
	pmc_follow_forget(&pm->follow, addr, (size_t)nr_frames * PM_FRAME_SIZE);
	if (munmap(addr, (size_t)nr_frames * PM_FRAME_SIZE) < 0)
		return errno;
	return 0;
}
