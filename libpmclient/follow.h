/*
 * follow.h - mappings that follow their frames.
 *
 * Every mapping the library makes of a segment is registered with a
 * userfaultfd for missing pages. The pmd allocates frames physical, so a
 * hole in a segment means the frame there was freed or moved away; a
 * touch of it wakes the fault thread, which asks the pmd (over the task's
 * own fault session, so that a thread faulting while it holds the session
 * lock cannot block it) where the frame is now, maps that one page
 * MAP_FIXED from the frame's new segment over the faulting page, registers
 * it in turn, and wakes the faulting thread. A frame that is gone reads as
 * zeros. Only the faulting thread waits.
 *
 * The pmd also talks to the fault thread unasked (STOP and RESUME,
 * pm_proto.h): before it moves frames, it has every holder of their
 * segments write-protect its mappings of those slots (userfaultfd
 * write-protection: stores wait, reads go on) or take away those that
 * stand for a frame leaving a shared slot; faults on what a stop names
 * wait until its RESUME, and then find the frames where they are now. So
 * a store that completed is never lost to a move and a mapping never
 * shows another frame's bytes. Mappings made while a stop holds (a map
 * on another thread) get its protection as they are registered.
 *
 * A frame the pmd took back (the extra-frame protocol: its contents are
 * lost) faults into SIGBUS: the page becomes one of an empty file, as a
 * mapping of a truncated file does. The pmd's RECLAIM ("give back N
 * extra frames") goes to the reclaim callback, which must not block.
 *
 * Lock key: (F) follow->lock; (C) set before the thread starts.
 */
#ifndef PMC_FOLLOW_H
#define PMC_FOLLOW_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pm/pm.h>

/* The descriptor of a segment the session holds, or -1. Lock-free. */
typedef int pmc_seg_fd_fn(void *arg, uint64_t seg);

/* Where a frame is now, as the session's own frame view says. */
struct pmc_place {
	container_t cont;            /* the frame: container, */
	frame_t frame;               /* and number */
	uint64_t seg;
	uint32_t slot;
	bool cow;
	int fd;                      /* the session's descriptor of seg; -1:
				      * not in the session's table */
};
/* Finds the current place of the frame mapped at (seg, slot) without the
 * pmd: c and f name it when the mapping knows (0: look it up by slot, in
 * the note of what the fast path gave the slot's address out for; found
 * so, out->cont and out->frame name the frame even when the answer is
 * false: the view cannot say where it is). */
typedef bool pmc_local_fn(void *arg, uint64_t seg, uint32_t slot,
			  container_t c, frame_t f, struct pmc_place *out);
/* The pmd asks for frames extra frames back (on the fault thread). */
typedef void pmc_reclaim_fn(void *arg, uint32_t frames);

struct pmc_follow {
	int uffd;                    /* (C) -1: mappings do not follow */
	int sock;                    /* (C) the fault session, thread only */
	int stop_fd;                 /* (C) eventfd that ends the thread */
	bool running;                /* (C) */
	pthread_t thread;            /* (C) */
	uint32_t seq;                /* thread only */
	uint16_t status;             /* thread only: the last reply's */
	pmc_seg_fd_fn *seg_fd;       /* (C) */
	pmc_local_fn *local;         /* (C) NULL: always ask the pmd */
	pmc_reclaim_fn *reclaim;     /* (C) NULL: RECLAIM is ignored */
	void *arg;                   /* (C) of the three */
	int gone_fd;                 /* (C) an empty file: pages of frames the
	                              * pmd took back map it (SIGBUS) */
	pthread_mutex_t lock;
	struct pmc_fmap **maps;      /* (F) registered mappings, by address
	                              * (none overlaps another) */
	uint32_t nmaps, maps_cap;    /* (F) */
	struct pmc_fseg *segs;       /* (F) descriptors the fault session got */
	struct pmc_fstop *stops;     /* (F) the pmd's stops in force */
	struct pmc_fcow *cows;       /* (F) slots shared copy-on-write */
	uint32_t ncows, cows_cap;    /* (F) */
	struct pmc_fdefer *deferred; /* thread only: faults waiting for a
	                              * RESUME, and those it released */
	uint32_t ndeferred, deferred_cap; /* thread only */
	uint8_t *rx;                 /* thread only: one message from the pmd */
	bool sock_gone;              /* thread only: the pmd hung up */
	uint64_t stops_served;       /* (F) STOPs answered */
	uint64_t resolved;           /* (F) faults answered by the pmd */
	uint64_t resolved_local;     /* (F) faults answered by the view */
};

void pmc_follow_init(struct pmc_follow *f);
/* Opens the userfaultfd; on failure *why says why (static text). */
error_t pmc_follow_open(struct pmc_follow *f, const char **why);
/* Attaches the fault session (task, key from ATTACH_KEY) at path and
 * starts the thread. */
error_t pmc_follow_attach(struct pmc_follow *f, const char *path,
			  uint64_t task, const uint8_t key[16],
			  pmc_seg_fd_fn *seg_fd, pmc_local_fn *local,
			  pmc_reclaim_fn *reclaim, void *arg, const char **why);
/* Ends the thread and closes everything; pending faults are released. */
void pmc_follow_fini(struct pmc_follow *f);

static inline bool pmc_follow_on(const struct pmc_follow *f)
{
	return f->uffd >= 0;
}

/* Registers [addr, addr + len), a mapping of segment seg from slot on,
 * with protection prot, of frames frame.. of container c (0: a whole
 * segment, whose slots' frames the session notes elsewhere). No-op when
 * not following. */
error_t pmc_follow_add(struct pmc_follow *f, void *addr, size_t len,
		       uint64_t seg, uint32_t slot, int prot, container_t c,
		       frame_t frame);
/* The same in two steps, for a range mapped run by run: register it
 * whole once (every page mapped from segments), then note each run. */
error_t pmc_follow_register(struct pmc_follow *f, void *addr, size_t len);
error_t pmc_follow_note(struct pmc_follow *f, void *addr, size_t len,
			uint64_t seg, uint32_t slot, int prot, container_t c,
			frame_t frame);
/* Forgets every registration inside [addr, addr + len) (being unmapped). */
void pmc_follow_forget(struct pmc_follow *f, void *addr, size_t len);
/* A new descriptor of segment seg if a fault brought it (the pmd counts
 * it as the task's from then on, so a map will not send it again); -1
 * when none did. */
int pmc_follow_seg_dup(struct pmc_follow *f, uint64_t seg);

#endif
