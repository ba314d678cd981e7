/*
 * io.h - reads and writes through the pmd: how a server holding a weak
 * reference moves data in and out of a client's container (the seed's
 * "Moving Data").
 *
 * A request of len bytes at offset from frame touches every frame from
 * frame + offset / PM_FRAME_SIZE on; each must exist. A write breaks the
 * copy-on-write shares it touches first. The decode says whether frames
 * of the range live on other nodes: then the daemon moves the bytes by
 * RDMA along a plan of pieces (pmd_io_plan), else it copies them here.
 *
 * Lock key: (L) the pmd loop thread.
 */
#ifndef PMD_IO_H
#define PMD_IO_H

#include <stdbool.h>
#include <stdint.h>

#include <pm/pm.h>

#include "borrowed.h"
#include "core.h"
#include "pm_proto.h"

/* One read or write, decoded. */
struct pmd_io {
	struct pmd_container *cont;
	bool write;
	frame_t first;                /* the first frame touched */
	uint64_t nframes;             /* frames touched */
	uint32_t pos;                 /* offset in the first */
	uint32_t len;                 /* bytes */
	uint64_t nremote;             /* of the frames, on other nodes */
	uint64_t ncow;                /* copy-on-write frames a write breaks
	                               * (their slots are reserved) */
};

/* Decode: rights, range, every touched frame present (ENOENT), none on a
 * node that went down (EIO); for a write, slots reserved for the copies
 * it breaks (ENOMEM). Nothing visible changes. */
error_t pmd_io_decode(struct pmd_core *core, struct pmd_task *task,
		      container_t h, bool write, frame_t frame,
		      uint64_t offset, uint32_t len, struct pmd_io *io,
		      struct pmd_culprit *why);
/* Invoke, when no frame is remote: the bytes out of the frames into buf,
 * or out of buf into the frames. Cannot fail. */
void pmd_io_read(struct pmd_core *core, const struct pmd_io *io, void *buf);
void pmd_io_write(struct pmd_core *core, const struct pmd_io *io,
		  const void *buf);

/* Where the bytes of a read or write are: a local frame's, or a range of
 * a lender's registered segment. */
struct pmd_io_piece {
	uint8_t *local;               /* a local frame's bytes, or NULL */
	pm_node_t node;               /* remote: where */
	uint64_t key, base, rlen;     /* its lender's registration */
	uint64_t roff;                /* offset in it */
	uint32_t len;
};
#define PMD_IO_PIECES (PM_IO_MAX / PM_FRAME_SIZE + 1)

/* Invoke, when frames are remote: a write breaks its copies here first;
 * then pieces[*npieces] say where the bytes are, in order (frames next
 * to each other in one segment, here or of one lender, make one piece:
 * one copy or one RDMA operation). Cannot fail. */
void pmd_io_plan(struct pmd_core *core, const struct pmd_io *io,
		 struct pmd_io_piece *pieces, uint32_t *npieces);
/* The piece of len bytes at pos of remote frame e, in r (e's segment). */
struct pmd_io_piece pmd_io_piece_remote(const struct pmd_rseg *r,
					const struct pmd_frame *e,
					uint32_t pos, uint32_t len);

#endif
