/*
 * fuzz_cluster_file.c - the cluster file's parser (pmd_cluster_parse).
 *
 * The input's first byte picks the node this is (1 to 4), the rest is the
 * file's text. A file refused leaves the output untouched and says why;
 * one accepted names this node once, every node once, with an address and
 * a port of digits, and timings in the order the failure detector needs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_conf.h"
#include "fuzz.h"

static void fail(const char *why)
{
	fprintf(stderr, "fuzz: %s\n", why);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pmd_cluster_conf out, untouched;
	char err[512] = "";
	pm_node_t self;
	char *text;
	bool me = false;

	if (!size)
		return 0;
	self = (pm_node_t)(data[0] % 4 + 1);
	text = malloc(size);
	if (!text)
		abort();
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	memset(&out, 0xa5, sizeof(out));
	memcpy(&untouched, &out, sizeof(out));
	if (pmd_cluster_parse(text, "/nonexistent/cluster.conf", self, &out,
			      err, sizeof(err))) {
		if (memcmp(&out, &untouched, sizeof(out)))
			fail("a refused file changed the output");
		if (!err[0])
			fail("a refused file without a reason");
		free(text);
		return 0;
	}
	free(text);
	if (!out.nnodes || out.nnodes > PMD_CLUSTER_NODES_MAX)
		fail("a cluster of no nodes, or too many");
	if (!(out.heartbeat_ms < out.suspect_ms &&
	      out.suspect_ms < out.down_ms))
		fail("timings out of order");
	for (unsigned i = 0; i < out.nnodes; i++) {
		const struct pmd_cluster_node *n = &out.nodes[i];

		me |= n->id == self;
		if (!n->id || n->id == UINT16_MAX)
			fail("a node id out of range");
		if (!n->host[0] || !memchr(n->host, '\0', sizeof(n->host)))
			fail("a node without an address");
		if (!n->port[0] || strspn(n->port, "0123456789") !=
		    strlen(n->port) || atoi(n->port) < 1 ||
		    atoi(n->port) > 65535)
			fail("a port that is not one");
		for (unsigned k = 0; k < i; k++)
			if (out.nodes[k].id == n->id)
				fail("a node named twice");
	}
	if (!me)
		fail("this node is not in it");
	if (!memchr(out.secret_file, '\0', sizeof(out.secret_file)) ||
	    !memchr(out.transport, '\0', sizeof(out.transport)))
		fail("an unterminated string");
	return 0;
}
