/* container.c - see container.h. */
#include "container.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "log.h"
#include "segment.h"
#include "task.h"

#define ALLOC_FLAGS (CONT_ALLOC_PARTIAL | CONT_ALLOC_SQUASH | CONT_ALLOC_EXTRA)
#define MAP_FLAGS   (CONT_MAP_READ | CONT_MAP_WRITE | CONT_MAP_FORCE_WRITE)

/* Decode step shared by every operation: the handle names a live
 * capability of this task with the rights asked for. */
static error_t cap_decode(struct pmd_task *task, container_t h,
			  uint32_t rights, struct pmd_cap **cap_out,
			  struct pmd_culprit *why)
{
	struct pmd_cap *cap = pmd_htab_lookup(&task->handles, h);

	why->arg = 1;
	if (!cap)
		return EBADF;
	if ((cap->rights & rights) != rights)
		return EPERM;
	why->arg = 0;
	*cap_out = cap;
	return 0;
}

/* Frames start .. start+count-1 are a valid range: count >= 1 and no
 * identifier wraps. */
static bool range_ok(frame_t start, uint64_t count)
{
	return count >= 1 && start <= UINT64_MAX - (count - 1);
}

error_t pmd_container_create(struct pmd_core *core, struct pmd_task *task,
			     container_t *handle_out)
{
	struct pmd_container *c;
	struct pmd_cap *cap = NULL;
	error_t err;

	c = calloc(1, sizeof(*c));
	if (!c)
		return ENOMEM;
	cap = calloc(1, sizeof(*cap));
	if (!cap) {
		err = ENOMEM;
		goto free_cont;
	}
	err = pmd_htab_insert(&task->handles, cap);
	if (err)
		goto free_cap;

	c->id = (uint64_t)core->cfg.node << 48 | ++core->next_container;
	c->owner = task;
	pmd_ftab_init(&c->frames);
	pmd_list_init(&c->segments);
	pmd_list_init(&c->caps);
	c->policy = PM_PLACE_LOCAL;
	pmd_list_add(&task->containers, &c->owner_link);
	task->ncontainers++;
	core->ncontainers++;

	cap->cont = c;
	cap->holder = task;
	cap->rights = PMD_RIGHTS_ALL;
	pmd_list_add(&c->caps, &cap->cont_link);
	*handle_out = cap->handle;
	return 0;

free_cap:
	free(cap);
free_cont:
	free(c);
	return err;
}

/* Drops one frame: its slot reference, its charge, its table entry. */
static void frame_drop(struct pmd_core *core, struct pmd_container *c,
		       frame_t f, struct pmd_frame *e)
{
	struct pmd_segment *seg = pmd_segtab_get(&core->segs, e->seg);

	assert(seg);
	if (e->flags & PMD_FRAME_COW)
		c->cow_frames--;
	if (pmd_segment_slot_put(&core->segs, seg, e->slot)) {
		if (seg->domain)
			seg->domain->free_slots++;
		else if (seg->slots.used == 0)
			pmd_segment_destroy(&core->segs, seg);
	}
	pmd_charge_sub(&core->budget, &c->owner->charge,
		       e->flags & PMD_FRAME_EXTRA);
	pmd_ftab_remove(&c->frames, f);
	core->nframes--;
}

/* Empty segments of c beyond the first go back to the kernel, so that
 * deallocating many frames releases descriptors and address space too. */
static void container_trim_segments(struct pmd_core *core,
				    struct pmd_container *c)
{
	struct pmd_list *pos, *tmp;
	bool kept = false;

	pmd_list_for_each_safe(pos, tmp, &c->segments) {
		struct pmd_segment *seg =
			pmd_container_of(pos, struct pmd_segment, link);
		if (seg->slots.used)
			continue;
		if (!kept) {
			kept = true;
			continue;
		}
		c->free_slots -= PMD_SEG_SLOTS;
		pmd_segment_destroy(&core->segs, seg);
	}
}

void pmd_container_free(struct pmd_core *core, struct pmd_container *c)
{
	struct pmd_list *pos, *tmp;
	frame_t f = 0;
	struct pmd_frame *e;

	/* Every capability naming it dies, whoever holds it. */
	pmd_list_for_each_safe(pos, tmp, &c->caps) {
		struct pmd_cap *cap =
			pmd_container_of(pos, struct pmd_cap, cont_link);
		pmd_htab_remove(&cap->holder->handles, cap);
		pmd_list_del(&cap->cont_link);
		free(cap);
	}
	while (pmd_ftab_next(&c->frames, &f, &e))
		frame_drop(core, c, f, e);
	pmd_ftab_fini(&c->frames);

	/* Segments with slots still shared copy-on-write by other containers
	 * outlive it, orphaned; the rest go now. */
	pmd_list_for_each_safe(pos, tmp, &c->segments) {
		struct pmd_segment *seg =
			pmd_container_of(pos, struct pmd_segment, link);
		if (seg->slots.used) {
			pmd_list_del(&seg->link);
			seg->domain = NULL;
		} else {
			pmd_segment_destroy(&core->segs, seg);
		}
	}
	pmd_list_del(&c->owner_link);
	c->owner->ncontainers--;
	core->ncontainers--;
	free(c);
}

error_t pmd_container_destroy(struct pmd_core *core, struct pmd_task *task,
			      container_t h, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = cap_decode(task, h, PMD_RIGHT_OWNER, &cap, why);

	if (err)
		return err;
	pmd_container_free(core, cap->cont);
	return 0;
}

error_t pmd_container_stat(struct pmd_core *core, struct pmd_task *task,
			   container_t h, struct pm_stat_rep *st_out,
			   struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	error_t err = cap_decode(task, h, 0, &cap, why);

	if (err)
		return err;
	memset(st_out, 0, sizeof(*st_out));
	st_out->frames = cap->cont->frames.count;
	st_out->resident = cap->cont->frames.count;
	st_out->cow = cap->cont->cow_frames;
	st_out->home = (uint16_t)(cap->cont->id >> 48);
	return 0;
}

/* Makes sure c has at least `need` free slots in its own segments. On
 * failure the segments made so far stay with c (empty, harmless). */
static error_t container_reserve_slots(struct pmd_core *core,
				       struct pmd_container *c, uint64_t need)
{
	while (c->free_slots < need) {
		struct pmd_segment *seg;
		error_t err = pmd_segment_create(&core->segs, &seg);
		if (err)
			return err;
		seg->domain = c;
		pmd_list_add(&c->segments, &seg->link);
		c->free_slots += PMD_SEG_SLOTS;
	}
	return 0;
}

/* Takes one free slot of c's own segments; there must be one. */
static void container_take_slot(struct pmd_core *core, struct pmd_container *c,
				struct pmd_frame *e)
{
	struct pmd_list *pos;

	for (pos = c->segments.next; pos != &c->segments; pos = pos->next) {
		struct pmd_segment *seg =
			pmd_container_of(pos, struct pmd_segment, link);
		int slot = pmd_segment_slot_alloc(&core->segs, seg);
		if (slot < 0)
			continue;
		c->free_slots--;
		e->seg = seg->index;
		e->slot = (uint16_t)slot;
		e->gen++;
		/* Keep segments with room at the front. */
		if (pmd_slots_free(&seg->slots) == 0 && pos->next != &c->segments) {
			pmd_list_del(pos);
			struct pmd_list *last = c->segments.prev;
			pmd_list_add(last, pos);
		}
		return;
	}
	assert(!"container_take_slot without a reserved slot");
}

error_t pmd_container_allocate(struct pmd_core *core, struct pmd_task *task,
			       container_t h, frame_t start, uint32_t count,
			       uint32_t flags, uint32_t *done,
			       struct pmd_culprit *why)
{
	bool extra_ok = flags & CONT_ALLOC_EXTRA;
	bool squash = flags & CONT_ALLOC_SQUASH;
	struct pmd_container *c;
	struct pmd_quota q;
	struct pmd_cap *cap;
	uint32_t n = 0, i;
	error_t stop = 0, err;

	*done = 0;
	err = cap_decode(task, h, PMD_RIGHT_OWNER, &cap, why);
	if (err)
		return err;
	if (!range_ok(start, count)) {
		why->arg = 3;
		return EINVAL;
	}
	if (flags & ~ALLOC_FLAGS) {
		why->arg = 4;
		return EINVAL;
	}
	c = cap->cont;

	/* Decode: walk the frames in order until the first that cannot be
	 * allocated; that error is the stop. */
	pmd_quota_init(&core->budget, &task->charge, extra_ok, &q);
	for (n = 0; n < count; n++) {
		struct pmd_frame *old = pmd_ftab_lookup(&c->frames, start + n);
		bool extra;

		if (old && !squash) {
			stop = EEXIST;
			break;
		}
		if (old)
			pmd_quota_return(&q, old->flags & PMD_FRAME_EXTRA,
					 extra_ok);
		if (!pmd_quota_take(&q, &extra)) {
			stop = ENOMEM;
			break;
		}
	}
	/* Reserve slots and table nodes for the n frames; running out here
	 * is one more reason to stop early. */
	if (n && container_reserve_slots(core, c, n)) {
		n = c->free_slots < n ? (uint32_t)c->free_slots : n;
		stop = ENOMEM;
	}
	for (i = 0; i < n; i++) {
		if (pmd_ftab_reserve(&c->frames, start + i)) {
			n = i;
			stop = ENOMEM;
			break;
		}
	}
	if (stop) {
		why->frame = start + n;
		if (!(flags & CONT_ALLOC_PARTIAL) || n == 0)
			return stop;
	}

	/* Invoke: replay the same quota walk, now for real. */
	pmd_quota_init(&core->budget, &task->charge, extra_ok, &q);
	for (i = 0; i < n; i++) {
		frame_t f = start + i;
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, f);
		bool extra, ok;

		if (e) {
			pmd_quota_return(&q, e->flags & PMD_FRAME_EXTRA,
					 extra_ok);
			frame_drop(core, c, f, e);
		}
		ok = pmd_quota_take(&q, &extra);
		assert(ok);
		(void)ok;
		e = pmd_ftab_insert(&c->frames, f);
		container_take_slot(core, c, e);
		if (extra)
			e->flags |= PMD_FRAME_EXTRA;
		pmd_charge_add(&core->budget, &task->charge, extra);
		core->nframes++;
	}
	*done = n;
	return stop;
}

error_t pmd_container_deallocate(struct pmd_core *core, struct pmd_task *task,
				 container_t h, frame_t start, uint32_t count,
				 struct pmd_culprit *why)
{
	struct pmd_container *c;
	struct pmd_cap *cap;
	error_t err;

	err = cap_decode(task, h, PMD_RIGHT_OWNER, &cap, why);
	if (err)
		return err;
	if (!range_ok(start, count)) {
		why->arg = 3;
		return EINVAL;
	}
	c = cap->cont;
	for (uint32_t i = 0; i < count; i++) {
		if (!pmd_ftab_lookup(&c->frames, start + i)) {
			why->frame = start + i;
			return ENOENT;
		}
	}
	for (uint32_t i = 0; i < count; i++)
		frame_drop(core, c, start + i,
			   pmd_ftab_lookup(&c->frames, start + i));
	container_trim_segments(core, c);
	return 0;
}

error_t pmd_container_map(struct pmd_core *core, struct pmd_task *task,
			  container_t h, frame_t start, uint32_t count,
			  uint32_t flags, struct pmd_map_out *out,
			  struct pmd_culprit *why)
{
	uint32_t want = CONT_MAP_READ;
	struct pm_map_run *run = NULL;
	struct pmd_container *c;
	struct pmd_cap *cap;
	bool writable = true;
	error_t err;
	uint32_t i;

	if (flags & CONT_MAP_WRITE)
		want |= CONT_MAP_WRITE;
	err = cap_decode(task, h, PMD_RIGHT_MAP | PMD_RIGHT_READ |
			 ((flags & CONT_MAP_WRITE) ? PMD_RIGHT_WRITE : 0),
			 &cap, why);
	if (err)
		return err;
	if (!range_ok(start, count) || count > PM_MAP_MAX) {
		why->arg = 3;
		return EINVAL;
	}
	if ((flags & ~MAP_FLAGS) || !(flags & (CONT_MAP_READ | CONT_MAP_WRITE))) {
		why->arg = 5;
		return EINVAL;
	}
	c = cap->cont;
	for (i = 0; i < count; i++) {
		if (!pmd_ftab_lookup(&c->frames, start + i)) {
			why->frame = start + i;
			return ENOENT;
		}
	}

	out->nruns = out->nsegs = 0;
	for (i = 0; i < count; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&c->frames, start + i);
		struct pmd_segment *seg = pmd_segtab_get(&core->segs, e->seg);
		uint16_t prot = CONT_MAP_READ;

		/* The seed's rule: never a writable mapping of a
		 * copy-on-write frame. Breaking copies for FORCE_WRITE comes
		 * with the copy operation. */
		if ((want & CONT_MAP_WRITE) && !(e->flags & PMD_FRAME_COW))
			prot |= CONT_MAP_WRITE;
		if ((want & CONT_MAP_WRITE) && !(prot & CONT_MAP_WRITE))
			writable = false;

		if (run && run->segment == seg->id && run->prot == prot &&
		    run->slot + run->nframes == e->slot &&
		    run->nframes < UINT16_MAX) {
			run->nframes++;
			continue;
		}
		/* A new run; its segment may need a descriptor sent. */
		if (!pmd_task_has_segment(task, seg->id)) {
			bool listed = false;
			for (uint32_t s = 0; s < out->nsegs; s++)
				listed |= out->segs[s] == seg;
			if (!listed) {
				if (out->nsegs == PM_MAP_FDS_MAX)
					break; /* the task asks again */
				out->segs[out->nsegs++] = seg;
			}
		}
		run = &out->runs[out->nruns++];
		run->segment = seg->id;
		run->slot = e->slot;
		run->nframes = 1;
		run->prot = prot;
	}
	for (uint32_t s = 0; s < out->nsegs; s++) {
		err = pmd_task_add_segment(task, out->segs[s]->id);
		if (err)
			return err;
	}
	out->done = i;
	out->granted = CONT_MAP_READ | (writable ? want & CONT_MAP_WRITE : 0);
	return 0;
}

/* Decode for read and write: rights, range, every touched frame present.
 * Sets *first and *nframes to the frames touched. */
static error_t io_decode(struct pmd_task *task, container_t h, uint32_t rights,
			 frame_t frame, uint64_t offset, uint32_t len,
			 struct pmd_cap **cap_out, frame_t *first,
			 uint64_t *nframes, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	uint64_t skip, in_first, n;
	error_t err;

	err = cap_decode(task, h, rights, &cap, why);
	if (err)
		return err;
	if (len == 0 || len > PM_IO_MAX) {
		why->arg = 5;
		return EINVAL;
	}
	skip = offset / PM_FRAME_SIZE;
	in_first = offset % PM_FRAME_SIZE;
	n = (in_first + len + PM_FRAME_SIZE - 1) / PM_FRAME_SIZE;
	if (frame > UINT64_MAX - skip || !range_ok(frame + skip, n)) {
		why->arg = 3;
		return EINVAL;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (!pmd_ftab_lookup(&cap->cont->frames, frame + skip + i)) {
			why->frame = frame + skip + i;
			return ENOENT;
		}
	}
	*cap_out = cap;
	*first = frame + skip;
	*nframes = n;
	return 0;
}

error_t pmd_container_read(struct pmd_core *core, struct pmd_task *task,
			   container_t h, frame_t frame, uint64_t offset,
			   void *buf, uint32_t len, struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	frame_t first;
	uint64_t n, pos = offset % PM_FRAME_SIZE;
	uint8_t *dst = buf;
	error_t err;

	err = io_decode(task, h, PMD_RIGHT_READ, frame, offset, len, &cap,
			&first, &n, why);
	if (err)
		return err;
	for (uint64_t i = 0; i < n && len; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&cap->cont->frames, first + i);
		struct pmd_segment *seg = pmd_segtab_get(&core->segs, e->seg);
		uint32_t chunk = PM_FRAME_SIZE - (uint32_t)pos;

		if (chunk > len)
			chunk = len;
		memcpy(dst, (uint8_t *)pmd_segment_frame(seg, e->slot) + pos, chunk);
		dst += chunk;
		len -= chunk;
		pos = 0;
	}
	return 0;
}

error_t pmd_container_write(struct pmd_core *core, struct pmd_task *task,
			    container_t h, frame_t frame, uint64_t offset,
			    const void *buf, uint32_t len,
			    struct pmd_culprit *why)
{
	struct pmd_cap *cap;
	frame_t first;
	uint64_t n, pos = offset % PM_FRAME_SIZE;
	const uint8_t *src = buf;
	error_t err;

	err = io_decode(task, h, PMD_RIGHT_WRITE, frame, offset, len, &cap,
			&first, &n, why);
	if (err)
		return err;
	for (uint64_t i = 0; i < n && len; i++) {
		struct pmd_frame *e = pmd_ftab_lookup(&cap->cont->frames, first + i);
		struct pmd_segment *seg = pmd_segtab_get(&core->segs, e->seg);
		uint32_t chunk = PM_FRAME_SIZE - (uint32_t)pos;

		if (chunk > len)
			chunk = len;
		memcpy((uint8_t *)pmd_segment_frame(seg, e->slot) + pos, src, chunk);
		src += chunk;
		len -= chunk;
		pos = 0;
	}
	return 0;
}
