/*
 * pmctl - look at a running pmd from the command line.
 *
 *   pmctl [--socket PATH] nodes    the cluster as this node sees it
 *   pmctl [--socket PATH] stat     this node's accounting check
 *
 * The socket defaults to $PM_ENDPOINT, then the pmd's default. Exit
 * status: 0, 1 when the pmd cannot be reached or refuses, 2 for bad usage.
 */
#include <errno.h>
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
	fprintf(stderr, "usage: pmctl [--socket PATH] nodes|stat\n");
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
	if (i + 1 != argc)
		return usage();
	cmd = argv[i];
	if (strcmp(cmd, "nodes") && strcmp(cmd, "stat"))
		return usage();
	/* It maps nothing: no fault thread. */
	setenv("PM_NO_USERFAULTFD", "1", 0);
	err = pm_connect(sock, &pm);
	if (err) {
		fprintf(stderr, "pmctl: cannot reach the pmd: %s\n", strerror(err));
		return 1;
	}
	if (!strcmp(cmd, "nodes")) {
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
