/* io.c - see io.h. */
#include "io.h"

#include <errno.h>
#include <string.h>

#include "container.h"
#include "frame.h"

/* A remote frame whose node went down (or whose segment we no longer
 * know: the same). */
static bool io_lost(const struct pmd_core *core, const struct pmd_frame *e)
{
	return (e->flags & PMD_FRAME_LOST) ||
	       (pmd_frame_remote(e) && !pmd_rseg_find(core, e->node, e->seg));
}

error_t pmd_io_decode(struct pmd_core *core, struct pmd_task *task,
		      container_t h, bool write, frame_t frame,
		      uint64_t offset, uint32_t len, struct pmd_io *io,
		      struct pmd_culprit *why)
{
	uint64_t skip, in_first, n;
	struct pmd_container *c;
	struct pmd_cap *cap;
	error_t err;

	pmd_stops_reset(&core->stops);
	err = pmd_cap_decode(task, h, write ? PMD_RIGHT_WRITE : PMD_RIGHT_READ,
			     PMD_USE_ALL, &cap, why);
	if (err)
		return err;
	if (len == 0 || len > PM_IO_MAX) {
		why->arg = PMD_ARG_IO_LEN;
		return EINVAL;
	}
	skip = offset / PM_FRAME_SIZE;
	in_first = offset % PM_FRAME_SIZE;
	n = (in_first + len + PM_FRAME_SIZE - 1) / PM_FRAME_SIZE;
	if (frame > UINT64_MAX - skip || !pmd_range_ok(frame + skip, n)) {
		why->arg = PMD_ARG_IO_OFFSET;
		return EINVAL;
	}
	c = cap->cont;
	*io = (struct pmd_io){ .cont = c, .write = write, .first = frame + skip,
			       .nframes = n, .pos = (uint32_t)in_first,
			       .len = len };
	for (uint64_t i = 0; i < n; i++) {
		if (!pmd_ftab_lookup(&c->frames, io->first + i)) {
			why->frame = io->first + i;
			return pmd_frame_missing(c, io->first + i);
		}
	}
	for (uint64_t i = 0; i < n; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, io->first + i);

		pmd_frame_touch(core, e);
		if (io_lost(core, e)) {
			why->frame = io->first + i;
			return EIO; /* on a node that went down */
		}
		io->nremote += pmd_frame_remote(e);
		if (write && pmd_frame_borrowed_slot(core, c, e)) {
			io->ncow++;
			err = pmd_frame_break_stops(core, c, e, io->first + i);
			if (err)
				return err;
		}
	}
	/* A write breaks the copies it touches: their slots now. */
	if (io->ncow)
		return pmd_container_slots_reserve(core, c, io->ncow);
	return 0;
}

/* The frames of an I/O in order, each with its part of the bytes: at
 * pos in the frame, len bytes, at off in the request's. */
struct io_part {
	uint64_t i;                   /* frame index in the request */
	const struct pmd_frame *e;
	uint32_t pos, len, off;
};

static bool io_next(const struct pmd_io *io, struct io_part *p)
{
	if (p->off + p->len >= io->len)
		return false;
	if (p->e) {
		p->i++;
		p->off += p->len;
		p->pos = 0;
	} else {
		p->pos = io->pos;
	}
	p->e = pmd_ftab_lookup(&io->cont->frames, io->first + p->i);
	p->len = PM_FRAME_SIZE - p->pos;
	if (p->len > io->len - p->off)
		p->len = io->len - p->off;
	return true;
}

void pmd_io_read(struct pmd_core *core, const struct pmd_io *io, void *buf)
{
	for (struct io_part p = { 0 }; io_next(io, &p);)
		memcpy((uint8_t *)buf + p.off, pmd_frame_bytes(core, p.e) + p.pos,
		       p.len);
}

/* Breaks the copies the write touches (inside a view change). */
static void io_break_cows(struct pmd_core *core, const struct pmd_io *io)
{
	for (uint64_t i = 0; io->ncow && i < io->nframes; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&io->cont->frames,
						      io->first + i);
		if (pmd_frame_borrowed_slot(core, io->cont, e))
			pmd_frame_break_cow(core, io->cont, io->first + i, e);
	}
}

void pmd_io_write(struct pmd_core *core, const struct pmd_io *io,
		  const void *buf)
{
	pmd_cview_begin(io->cont);
	io_break_cows(core, io);
	for (struct io_part p = { 0 }; io_next(io, &p);) {
		struct pmd_segment *seg = pmd_frame_seg(core, p.e);

		memcpy((uint8_t *)pmd_segment_frame(seg, p.e->slot) + p.pos,
		       (const uint8_t *)buf + p.off, p.len);
		/* Written: the kernel gave it a page. */
		if (!pmd_segment_physical(seg, p.e->slot)) {
			pmd_segment_written(seg, p.e->slot);
			pmd_cview_put(core, io->cont, io->first + p.i, p.e);
		}
	}
	pmd_cview_end(io->cont);
}

struct pmd_io_piece pmd_io_piece_remote(const struct pmd_rseg *r,
					const struct pmd_frame *e,
					uint32_t pos, uint32_t len)
{
	return (struct pmd_io_piece){
		.node = e->node, .key = r->key, .base = r->base,
		.rlen = r->len, .len = len,
		.roff = (uint64_t)e->slot * PM_FRAME_SIZE + pos };
}

/* Frames next to each other in one segment (here, or one lender's) make
 * one piece. true when next joined prev. */
static bool io_piece_join(struct pmd_io_piece *prev,
			  const struct pmd_io_piece *next)
{
	if (!prev || !!prev->local != !!next->local)
		return false;
	if (prev->local ? prev->local + prev->len != next->local
			: prev->node != next->node || prev->key != next->key ||
			  prev->base != next->base ||
			  prev->roff + prev->len != next->roff)
		return false;
	prev->len += next->len;
	return true;
}

void pmd_io_plan(struct pmd_core *core, const struct pmd_io *io,
		 struct pmd_io_piece *pieces, uint32_t *npieces)
{
	uint32_t k = 0;

	/* A write breaks the copy-on-write shares it touches here first, as
	 * a local write does; their pieces then point at the frames' own
	 * slots. */
	if (io->ncow) {
		pmd_cview_begin(io->cont);
		io_break_cows(core, io);
		pmd_cview_end(io->cont);
	}
	for (struct io_part p = { 0 }; io_next(io, &p);) {
		if (pmd_frame_remote(p.e))
			pieces[k] = pmd_io_piece_remote(
				pmd_rseg_find(core, p.e->node, p.e->seg), p.e,
				p.pos, p.len);
		else
			pieces[k] = (struct pmd_io_piece){
				.local = pmd_frame_bytes(core, p.e) + p.pos,
				.len = p.len };
		k += !io_piece_join(k ? &pieces[k - 1] : NULL, &pieces[k]);
	}
	*npieces = k;
}
