/*
 * fuzz_membership.c - membership messages (CHAL, RESP, CONF, HB) as node
 * 1 receives them, honest ones and forged ones mixed.
 *
 * Node 1 (under test) and node 2 (honest, with the secret) run the
 * protocol with each other; node 3 is in the cluster file but only the
 * input speaks for it, without the secret. An input is a series of
 * records:
 *
 *   u8 op % 4   0: time passes (u16 ms follow) and both nodes tick;
 *               1: what each sent reaches the other;
 *               2: a message of the input reaches node 1 (u8 the node the
 *                  transport says sent it, then 104 bytes);
 *               3: node 2's next message to node 1 reaches it changed
 *                  (u8 offset, u8 xor), the rest of its queue dropped
 *
 * After every record node 1's view must hold: node 3, which cannot prove
 * the secret, is never up; node 2 is up only under its own incarnation;
 * every state is one of the three.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "log.h"
#include "membership.h"

static struct pmd_cluster_conf conf;
static struct pmd_mb one, two;

static void conf_init(void)
{
	conf.heartbeat_ms = 100;
	conf.suspect_ms = 500;
	conf.down_ms = 1500;
	conf.nnodes = 3;
	for (unsigned i = 0; i < 3; i++) {
		conf.nodes[i].id = (pm_node_t)(i + 1);
		snprintf(conf.nodes[i].host, sizeof(conf.nodes[i].host),
			 "10.0.0.%u", i + 1);
		strcpy(conf.nodes[i].port, "7100");
	}
	memcpy(conf.secret, "fuzzing-secret-0123456789abcdef", 31);
	conf.secret_len = 31;
}

/* What mb sent to `to` reaches it at now (others dropped). */
static void deliver(struct pmd_mb *from, struct pmd_mb *to, uint64_t now)
{
	struct pmd_mb_out out[sizeof(from->out) / sizeof(from->out[0])];
	unsigned n = from->nout;

	memcpy(out, from->out, sizeof(out[0]) * n);
	from->nout = 0;
	for (unsigned i = 0; i < n; i++)
		if (out[i].to == to->self)
			pmd_mb_receive(to, now, from->self, &out[i].msg,
				       sizeof(out[i].msg));
}

static void check(void)
{
	const struct pmd_mb_peer *p2 = pmd_mb_peer(&one, 2);
	const struct pmd_mb_peer *p3 = pmd_mb_peer(&one, 3);

	for (unsigned i = 0; i < one.npeers; i++) {
		int s = one.peers[i].state;
		if (s != PM_NODE_UP && s != PM_NODE_SUSPECT &&
		    s != PM_NODE_DOWN) {
			fprintf(stderr, "fuzz: node %u in state %d\n",
				one.peers[i].id, s);
			abort();
		}
	}
	if (p3->state != PM_NODE_DOWN) {
		fprintf(stderr, "fuzz: node 3 got in without the secret\n");
		abort();
	}
	if (p2->state != PM_NODE_DOWN && p2->inc != two.inc) {
		fprintf(stderr, "fuzz: node 2 up under incarnation %lu, not "
			"%lu\n", (unsigned long)p2->inc,
			(unsigned long)two.inc);
		abort();
	}
	if (one.nout > sizeof(one.out) / sizeof(one.out[0]))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint64_t now = 1000000;

	if (!conf.nnodes) {
		conf_init();
		pmd_log_verbosity = PMD_LOG_ERR;
	}
	pmd_mb_init(&one, &conf, 1, 11);
	pmd_mb_init(&two, &conf, 2, 22);
	while (in.left) {
		struct pmd_mb_msg m;
		unsigned op = fuzz_take(&in, 1) % 4;

		switch (op) {
		case 0:
			now += fuzz_take(&in, 2);
			pmd_mb_tick(&one, now);
			pmd_mb_tick(&two, now);
			break;
		case 1:
			deliver(&one, &two, now);
			deliver(&two, &one, now);
			break;
		case 2: {
			pm_node_t src = (pm_node_t)fuzz_take(&in, 1);
			size_t n = in.left < sizeof(m) ? in.left : sizeof(m);

			memset(&m, 0, sizeof(m));
			memcpy(&m, in.p, n);
			in.p += n;
			in.left -= n;
			/* A short message too, at times. */
			pmd_mb_receive(&one, now, src, &m,
				       src & 0x80 ? n : sizeof(m));
			break;
		}
		case 3: {
			unsigned off = fuzz_take(&in, 1) % sizeof(m);
			uint8_t x = (uint8_t)fuzz_take(&in, 1);

			for (unsigned i = 0; i < two.nout; i++) {
				if (two.out[i].to != 1)
					continue;
				m = two.out[i].msg;
				((uint8_t *)&m)[off] ^= x;
				pmd_mb_receive(&one, now, 2, &m, sizeof(m));
				break;
			}
			two.nout = 0;
			break;
		}
		}
		check();
	}
	return 0;
}
