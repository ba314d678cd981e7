/* The node protocol's logic (see membership.h). */
#include "membership.h"

#include <assert.h>
#include <string.h>

#include <sodium.h>

#include "log.h"

static_assert(sizeof(struct pmd_mb_msg) == 104, "node message");

uint16_t pmd_mb_nreq_version(const struct pmd_mb_peer *p)
{
	uint16_t lo = PMD_NREQ_VERSION_MIN, hi = PMD_NREQ_VERSION;

	if (!p->nreq_max) /* nothing said: an older node */
		return PMD_NREQ_VERSION_MIN;
	if (p->nreq_min > lo)
		lo = p->nreq_min;
	if (p->nreq_max < hi)
		hi = p->nreq_max;
	return lo <= hi ? hi : 0;
}

struct pmd_mb_peer *pmd_mb_peer(struct pmd_mb *mb, pm_node_t id)
{
	for (unsigned i = 0; i < mb->npeers; i++)
		if (mb->peers[i].id == id)
			return &mb->peers[i];
	return NULL;
}

void pmd_mb_init(struct pmd_mb *mb, const struct pmd_cluster_conf *conf,
		 pm_node_t self, uint64_t inc)
{
	memset(mb, 0, sizeof(*mb));
	mb->self = self;
	mb->inc = inc;
	memcpy(mb->secret, conf->secret, conf->secret_len);
	mb->secret_len = conf->secret_len;
	mb->heartbeat_ms = conf->heartbeat_ms;
	mb->suspect_ms = conf->suspect_ms;
	mb->down_ms = conf->down_ms;
	for (unsigned i = 0; i < conf->nnodes; i++) {
		if (conf->nodes[i].id == self)
			continue;
		mb->peers[mb->npeers].id = conf->nodes[i].id;
		mb->peers[mb->npeers].state = PM_NODE_DOWN;
		mb->npeers++;
	}
}

/* MAC of m (its mac field taken as zero) and then extra bytes. */
static void mac_of(const struct pmd_mb *mb, const struct pmd_mb_msg *m,
		   const uint8_t *extra, size_t extra_len, uint8_t out[32])
{
	crypto_auth_hmacsha256_state st;
	struct pmd_mb_msg copy = *m;

	memset(copy.mac, 0, sizeof(copy.mac));
	crypto_auth_hmacsha256_init(&st, mb->secret, mb->secret_len);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)&copy, sizeof(copy));
	if (extra_len)
		crypto_auth_hmacsha256_update(&st, extra, extra_len);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof(st));
}

static bool mac_ok(const struct pmd_mb *mb, const struct pmd_mb_msg *m,
		   const uint8_t *extra, size_t extra_len)
{
	uint8_t want[32];

	mac_of(mb, m, extra, extra_len, want);
	return sodium_memcmp(want, m->mac, sizeof(want)) == 0;
}

/* A VER message's versions, in its nonce (little-endian u16 each). */
static void ver_put(uint8_t *nonce, uint16_t lo, uint16_t hi)
{
	nonce[0] = (uint8_t)lo;
	nonce[1] = (uint8_t)(lo >> 8);
	nonce[2] = (uint8_t)hi;
	nonce[3] = (uint8_t)(hi >> 8);
}

static struct pmd_mb_msg *out_msg(struct pmd_mb *mb, pm_node_t to,
				  uint16_t type, uint64_t to_inc)
{
	struct pmd_mb_out *o;

	if (mb->nout == sizeof(mb->out) / sizeof(mb->out[0]))
		return NULL; /* the daemon drains every turn: cannot happen */
	o = &mb->out[mb->nout++];
	memset(o, 0, sizeof(*o));
	o->to = to;
	o->msg.magic = PMD_MB_MAGIC;
	o->msg.version = PMD_MB_VERSION;
	o->msg.type = type;
	o->msg.from = mb->self;
	o->msg.to = to;
	o->msg.from_inc = mb->inc;
	o->msg.to_inc = to_inc;
	return &o->msg;
}

static void set_state(struct pmd_mb *mb, struct pmd_mb_peer *p, int state)
{
	static const char *const names[] = { "?", "up", "suspect", "down" };

	if (p->state == state)
		return;
	if (state == PM_NODE_DOWN)
		pmd_warn("node %u is down (not heard from for %u ms)", p->id,
			 mb->down_ms);
	else
		pmd_info("node %u is %s", p->id, names[state]);
	p->state = state;
	/* (A handshake in flight stays: a peer that was paused or cut off
	 * answers our earlier challenge late, and a fresh nonce now would
	 * take its right answer for a wrong secret.) */
}

/* A peer proved it holds the secret, under incarnation inc. */
static void authenticated(struct pmd_mb *mb, struct pmd_mb_peer *p,
			  uint64_t inc, uint64_t now_ms)
{
	if (p->inc && p->inc != inc)
		pmd_info("node %u rejoined under a new incarnation (%#lx, was "
			 "%#lx)", p->id, (unsigned long)inc, (unsigned long)p->inc);
	if (p->inc != inc) { /* (a restart may have changed its release) */
		p->hb_seq_in = 0;
		p->ver_seq_in = 0;
		p->nreq_min = p->nreq_max = 0;
		p->phys_known = false;
	}
	p->inc = inc;
	p->last_heard_ms = now_ms;
	p->chal_pending = false;
	set_state(mb, p, PM_NODE_UP);
}

static void refused(struct pmd_mb_peer *p, const char *what)
{
	if (p->refused++ % 100 == 0)
		pmd_warn("node %u failed authentication (%s): wrong cluster "
			 "secret? refused (%lu so far)", p->id, what,
			 (unsigned long)p->refused);
}

void pmd_mb_tick(struct pmd_mb *mb, uint64_t now_ms)
{
	bool beat = now_ms >= mb->next_hb_ms;

	if (beat) {
		mb->next_hb_ms = now_ms + mb->heartbeat_ms;
		mb->hb_seq++;
	}
	for (unsigned i = 0; i < mb->npeers; i++) {
		struct pmd_mb_peer *p = &mb->peers[i];
		struct pmd_mb_msg *m;

		if (p->state != PM_NODE_DOWN) {
			uint64_t quiet = now_ms - p->last_heard_ms;
			if (quiet >= mb->down_ms)
				set_state(mb, p, PM_NODE_DOWN);
			else if (quiet >= mb->suspect_ms)
				set_state(mb, p, PM_NODE_SUSPECT);
		}
		if (p->state != PM_NODE_DOWN && beat &&
		    (m = out_msg(mb, p->id, PMD_MB_HB, p->inc))) {
			m->seq = mb->hb_seq;
			m->frames_total = mb->frames_total;
			m->frames_free = mb->frames_free;
			mac_of(mb, m, NULL, 0, m->mac);
		}
		/* What we speak, with each heartbeat. */
		if (p->state != PM_NODE_DOWN && beat &&
		    (m = out_msg(mb, p->id, PMD_MB_VER, p->inc))) {
			m->seq = mb->hb_seq;
			ver_put(m->nonce, PMD_NREQ_VERSION_MIN,
				PMD_NREQ_VERSION);
			m->frames_total = mb->frames_total;
			m->frames_free = mb->phys_free;
			mac_of(mb, m, NULL, 0, m->mac);
		}
		/* Anyone not up is challenged again, at the heartbeat pace. */
		if (p->state != PM_NODE_UP && now_ms >= p->next_chal_ms &&
		    (m = out_msg(mb, p->id, PMD_MB_CHAL, 0))) {
			if (!p->chal_pending)
				randombytes_buf(p->chal_nonce, sizeof(p->chal_nonce));
			p->chal_pending = true;
			memcpy(m->nonce, p->chal_nonce, sizeof(m->nonce));
			p->next_chal_ms = now_ms + mb->heartbeat_ms;
		}
	}
}

uint64_t pmd_mb_next_ms(const struct pmd_mb *mb)
{
	/* The heartbeat pace covers challenges and state changes to within
	 * one beat. */
	return mb->next_hb_ms;
}

void pmd_mb_receive(struct pmd_mb *mb, uint64_t now_ms, pm_node_t src,
		    const void *data, size_t len)
{
	struct pmd_mb_msg m;
	struct pmd_mb_peer *p;
	struct pmd_mb_msg *o;

	if (len != sizeof(m))
		return;
	memcpy(&m, data, sizeof(m));
	if (m.magic != PMD_MB_MAGIC || m.version != PMD_MB_VERSION ||
	    m.to != mb->self || m.pad || !(p = pmd_mb_peer(mb, m.from)) ||
	    (src && src != m.from) || !m.from_inc)
		return; /* not ours, or not from who it says */

	switch (m.type) {
	case PMD_MB_CHAL:
		/* Answer: our nonce, and proof of the secret over both. */
		if (!(o = out_msg(mb, p->id, PMD_MB_RESP, m.from_inc)))
			return;
		/* A challenge repeated before our answer arrived gets the
		 * same answer, so that either confirmation checks. */
		if (!p->resp_pending || p->resp_inc != m.from_inc)
			randombytes_buf(p->resp_nonce, sizeof(p->resp_nonce));
		memcpy(o->nonce, p->resp_nonce, sizeof(o->nonce));
		mac_of(mb, o, m.nonce, sizeof(m.nonce), o->mac);
		p->resp_inc = m.from_inc;
		p->resp_pending = true;
		return;
	case PMD_MB_RESP:
		if (!p->chal_pending || m.to_inc != mb->inc)
			return; /* an answer to nothing we asked (now) */
		if (!mac_ok(mb, &m, p->chal_nonce, sizeof(p->chal_nonce))) {
			refused(p, "its answer");
			return;
		}
		if ((o = out_msg(mb, p->id, PMD_MB_CONF, m.from_inc)))
			mac_of(mb, o, m.nonce, sizeof(m.nonce), o->mac);
		authenticated(mb, p, m.from_inc, now_ms);
		return;
	case PMD_MB_CONF:
		if (!p->resp_pending || m.to_inc != mb->inc ||
		    m.from_inc != p->resp_inc)
			return;
		if (!mac_ok(mb, &m, p->resp_nonce, sizeof(p->resp_nonce))) {
			refused(p, "its confirmation");
			return;
		}
		p->resp_pending = false;
		authenticated(mb, p, m.from_inc, now_ms);
		return;
	case PMD_MB_HB:
		if (p->state == PM_NODE_DOWN || m.from_inc != p->inc ||
		    m.to_inc != mb->inc || m.seq <= p->hb_seq_in ||
		    !mac_ok(mb, &m, NULL, 0))
			return; /* stale, replayed or forged: ignored */
		p->hb_seq_in = m.seq;
		p->frames_total = m.frames_total;
		p->frames_free = m.frames_free;
		p->last_heard_ms = now_ms;
		set_state(mb, p, PM_NODE_UP);
		return;
	case PMD_MB_VER: {
		uint16_t lo = (uint16_t)(m.nonce[0] | m.nonce[1] << 8);
		uint16_t hi = (uint16_t)(m.nonce[2] | m.nonce[3] << 8);
		static const uint8_t zero[12];

		if (p->state == PM_NODE_DOWN || m.from_inc != p->inc ||
		    m.to_inc != mb->inc || m.seq <= p->ver_seq_in ||
		    !lo || lo > hi || memcmp(m.nonce + 4, zero, sizeof(zero)) ||
		    !mac_ok(mb, &m, NULL, 0))
			return;
		p->ver_seq_in = m.seq;
		if (m.frames_total) { /* (0 from a node before this) */
			p->phys_free = m.frames_free < m.frames_total ?
					       m.frames_free : m.frames_total;
			p->phys_known = true;
		}
		if (p->nreq_max != hi || p->nreq_min != lo) {
			p->nreq_min = lo;
			p->nreq_max = hi;
			if (pmd_mb_nreq_version(p))
				pmd_info("node %u speaks node requests %u to %u: "
					 "version %u between us", p->id, lo, hi,
					 pmd_mb_nreq_version(p));
			else
				pmd_warn("node %u speaks node requests %u to %u, "
					 "we %u to %u: it cannot be served",
					 p->id, lo, hi, PMD_NREQ_VERSION_MIN,
					 PMD_NREQ_VERSION);
		}
		return;
	}
	default:
		return;
	}
}
