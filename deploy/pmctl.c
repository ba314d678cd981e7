/*
 * pmctl - look at a running pmd from the command line.
 *
 *   pmctl [--socket PATH] nodes    the cluster as this node sees it
 *   pmctl [--socket PATH] stat     this node's accounting check
 *   pmctl [--socket PATH] ping N [COUNT]
 *                                  round trips from this pmd to node N
 *   pmctl [--socket PATH] metrics  its metrics (Prometheus text format)
 *
 * The socket defaults to $PM_ENDPOINT, then the pmd's default. Exit
 * status: 0, 1 when the pmd cannot be reached or refuses, 2 for bad usage.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pm/pm.h>

static const char *state_name(int s)
{
	return s == PM_NODE_UP ? "up" : s == PM_NODE_SUSPECT ? "suspect"
		: s == PM_NODE_DOWN ? "down" : "?";
}

static int usage(void)
{
	fprintf(stderr, "usage: pmctl [--socket PATH] nodes|stat|metrics|"
		"ping N [COUNT]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *cmd;
	pm_t *pm;
	int i = 1, rc = 0;
	error_t err;

	if (i + 1 < argc && !strcmp(argv[i], "--socket")) {
		sock = argv[i + 1];
		i += 2;
	}
	if (i >= argc)
		return usage();
	cmd = argv[i];
	if (!strcmp(cmd, "ping") ? (argc - i < 2 || argc - i > 3)
				 : (argc - i != 1 || (strcmp(cmd, "nodes") &&
						      strcmp(cmd, "stat") &&
						      strcmp(cmd, "metrics"))))
		return usage();
	/* It maps nothing: no fault thread. */
	setenv("PM_NO_USERFAULTFD", "1", 0);
	err = pm_connect(sock, &pm);
	if (err) {
		fprintf(stderr, "pmctl: cannot reach the pmd: %s\n", strerror(err));
		return 1;
	}
	if (!strcmp(cmd, "ping")) {
		char *end;
		unsigned long node = strtoul(argv[i + 1], &end, 10);
		unsigned long count = argc - i == 3 ? strtoul(argv[i + 2], NULL, 10) : 1;
		uint64_t rtt, best = UINT64_MAX;

		if (*end || node == 0 || node > 65534 || count == 0 || count > 100000) {
			pm_disconnect(pm);
			return usage();
		}
		for (unsigned long k = 0; k < count && !err; k++) {
			err = pm_debug_ping(pm, (pm_node_t)node, &rtt);
			if (!err && rtt < best)
				best = rtt;
			if (!err && count <= 10)
				printf("node %lu: %.1f us\n", node, rtt / 1e3);
		}
		if (!err && count > 10)
			printf("node %lu: %lu round trips, best %.1f us\n", node,
			       count, best / 1e3);
	} else if (!strcmp(cmd, "metrics")) {
		static char text[70000];
		size_t len;

		err = pm_debug_metrics(pm, text, sizeof(text), &len);
		if (!err)
			fputs(text, stdout);
	} else if (!strcmp(cmd, "nodes")) {
		struct pm_node_info n[64];
		int count = 64;

		err = pm_nodes(pm, n, &count);
		for (int k = 0; !err && k < count && k < 64; k++)
			printf("node %u %s frames %llu free %llu address %s "
			       "incarnation %#llx\n", n[k].id, state_name(n[k].state),
			       (unsigned long long)n[k].frames_total,
			       (unsigned long long)n[k].frames_free, n[k].address,
			       (unsigned long long)n[k].incarnation);
	} else {
		struct pm_debug_stat st;

		err = pm_debug_stat(pm, &st);
		if (!err)
			printf("tasks %llu containers %llu frames %llu charged %llu "
			       "free %llu of %llu invariant %s\n",
			       (unsigned long long)st.tasks,
			       (unsigned long long)st.containers,
			       (unsigned long long)st.frames,
			       (unsigned long long)st.charged,
			       (unsigned long long)st.frames_free,
			       (unsigned long long)st.frames_total,
			       st.invariant_ok ? "ok" : "BROKEN");
		if (!err && !st.invariant_ok)
			rc = 1;
	}
	if (err) {
		fprintf(stderr, "pmctl: %s: %s\n", cmd, strerror(err));
		rc = 1;
	}
	pm_disconnect(pm);
	return rc;
}
