/*
 * pmctl - look at a running pmd from the command line.
 *
 *   pmctl [--socket PATH] [--json] COMMAND
 *     nodes                 the cluster as this node sees it
 *     stat                  this node's accounting check
 *     tasks                 every task here (the operator's)
 *     containers [--task T] every container homed here, or task T's
 *     config                the settings in effect (the operator's)
 *     version               pmctl's and the pmd's
 *     ping N [COUNT]        round trips from this pmd to node N
 *     metrics               its metrics (Prometheus text format)
 *     drain [--timeout MS]  move what it lends back home, then stop it
 *
 * The socket defaults to $PM_ENDPOINT, then the pmd's default. --json
 * prints one JSON value instead of text (metrics stay text). Exit status:
 * 0; 1 when the pmd cannot be reached, refuses, or its check fails; 2 for
 * bad usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pm/pm.h>

#ifndef PMCTL_VERSION
#define PMCTL_VERSION "?"
#endif

static bool json;

static const char *state_name(int s)
{
	return s == PM_NODE_UP ? "up" : s == PM_NODE_SUSPECT ? "suspect"
		: s == PM_NODE_DOWN ? "down" : "?";
}

static void usage_text(FILE *f)
{
	fprintf(f,
"usage: pmctl [--socket PATH] [--json] COMMAND\n"
"  nodes                  the cluster as this node sees it\n"
"  stat                   this node's accounting check\n"
"  tasks                  every task here (the pmd's user or root)\n"
"  containers [--task T]  every container homed here, or task T's\n"
"  config                 the settings in effect (the pmd's user or root)\n"
"  version                pmctl's version and the pmd's\n"
"  ping N [COUNT]         round trips from this pmd to node N\n"
"  metrics                its metrics (Prometheus text format)\n"
"  drain [--timeout MS]   the nodes it lends to take their frames home;\n"
"                         then it stops (the pmd's user or root)\n"
"The socket: --socket, else $PM_ENDPOINT, else %s.\n", PM_DEFAULT_SOCKET);
}

static int usage(void)
{
	usage_text(stderr);
	return 2;
}

/* A JSON string. */
static void jstr(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

static error_t cmd_nodes(pm_t *pm)
{
	struct pm_node_info n[64];
	int count = 64;
	error_t err = pm_nodes(pm, n, &count);

	if (err)
		return err;
	if (json)
		putchar('[');
	for (int k = 0; k < count; k++) {
		if (json) {
			printf("%s{\"id\":%u,\"state\":\"%s\",\"frames_total\":"
			       "%llu,\"frames_free\":%llu,\"address\":",
			       k ? "," : "", n[k].id, state_name(n[k].state),
			       (unsigned long long)n[k].frames_total,
			       (unsigned long long)n[k].frames_free);
			jstr(n[k].address);
			printf(",\"incarnation\":%llu,\"version\":%u}",
			       (unsigned long long)n[k].incarnation,
			       n[k].version);
		} else {
			printf("node %u %s frames %llu free %llu address %s "
			       "incarnation %#llx version %u\n", n[k].id,
			       state_name(n[k].state),
			       (unsigned long long)n[k].frames_total,
			       (unsigned long long)n[k].frames_free,
			       n[k].address,
			       (unsigned long long)n[k].incarnation,
			       n[k].version);
		}
	}
	if (json)
		puts("]");
	return 0;
}

static error_t cmd_stat(pm_t *pm, int *rc)
{
	struct pm_debug_stat st;
	error_t err = pm_debug_stat(pm, &st);

	if (err)
		return err;
	if (json)
		printf("{\"tasks\":%llu,\"containers\":%llu,\"frames\":%llu,"
		       "\"charged\":%llu,\"slots_used\":%llu,\"segments\":%llu,"
		       "\"frames_total\":%llu,\"frames_free\":%llu,"
		       "\"requests\":%llu,\"invariant_ok\":%s}\n",
		       (unsigned long long)st.tasks,
		       (unsigned long long)st.containers,
		       (unsigned long long)st.frames,
		       (unsigned long long)st.charged,
		       (unsigned long long)st.slots_used,
		       (unsigned long long)st.segments,
		       (unsigned long long)st.frames_total,
		       (unsigned long long)st.frames_free,
		       (unsigned long long)st.requests,
		       st.invariant_ok ? "true" : "false");
	else
		printf("tasks %llu containers %llu frames %llu charged %llu "
		       "free %llu of %llu invariant %s\n",
		       (unsigned long long)st.tasks,
		       (unsigned long long)st.containers,
		       (unsigned long long)st.frames,
		       (unsigned long long)st.charged,
		       (unsigned long long)st.frames_free,
		       (unsigned long long)st.frames_total,
		       st.invariant_ok ? "ok" : "BROKEN");
	if (!st.invariant_ok)
		*rc = 1;
	return 0;
}

/* A listing, a page at a time: page() fills the listing's own array
 * with up to PAGE entries after `after`; print() prints entry k (the
 * first of all when first) and says its id, the next page's start. As
 * text, or one JSON array. */
#define PAGE 512
struct listing {
	error_t (*page)(pm_t *pm, pm_task_t task, uint64_t after, int *count,
			int *more);
	uint64_t (*print)(int k, bool first);
};

static error_t list_all(pm_t *pm, const struct listing *l, pm_task_t task)
{
	uint64_t after = 0;
	bool first = true;
	int more = 1;
	error_t err = 0;

	if (json)
		putchar('[');
	while (more && !err) {
		int count = PAGE;

		err = l->page(pm, task, after, &count, &more);
		for (int k = 0; !err && k < count; k++, first = false)
			after = l->print(k, first);
	}
	if (json && !err)
		puts("]");
	return err;
}

static struct pm_task_info tasks[PAGE];

static error_t tasks_page(pm_t *pm, pm_task_t task, uint64_t after,
			  int *count, int *more)
{
	(void)task;
	return pm_debug_tasks(pm, after, tasks, count, more);
}

static uint64_t task_print(int k, bool first)
{
	const struct pm_task_info *t = &tasks[k];

	if (json)
		printf("%s{\"task\":%llu,\"uid\":%u,\"pid\":%u,"
		       "\"guaranteed\":%llu,\"extra_limit\":%llu,"
		       "\"allocated\":%llu,\"extra_allocated\":"
		       "%llu,\"containers\":%llu,\"handles\":%u,"
		       "\"proxy\":%s}", first ? "" : ",",
		       (unsigned long long)t->task, t->uid, t->pid,
		       (unsigned long long)t->guaranteed,
		       (unsigned long long)t->extra_limit,
		       (unsigned long long)t->allocated,
		       (unsigned long long)t->extra_allocated,
		       (unsigned long long)t->containers, t->handles,
		       t->proxy ? "true" : "false");
	else
		printf("task %#llx uid %u pid %u guaranteed %llu "
		       "allocated %llu (extra %llu of %llu) "
		       "containers %llu handles %u%s\n",
		       (unsigned long long)t->task, t->uid, t->pid,
		       (unsigned long long)t->guaranteed,
		       (unsigned long long)t->allocated,
		       (unsigned long long)t->extra_allocated,
		       (unsigned long long)t->extra_limit,
		       (unsigned long long)t->containers, t->handles,
		       t->proxy ? " (another node's)" : "");
	return t->task;
}

static struct pm_container_info conts[PAGE];

static error_t containers_page(pm_t *pm, pm_task_t task, uint64_t after,
			       int *count, int *more)
{
	return pm_debug_containers(pm, task, after, conts, count, more);
}

static uint64_t container_print(int k, bool first)
{
	const struct pm_container_info *c = &conts[k];

	if (json)
		printf("%s{\"id\":%llu,\"owner\":%llu,"
		       "\"frames\":%llu,\"remote\":%llu,"
		       "\"cow\":%llu,\"shares\":%u,"
		       "\"locked_ms_left\":%u}", first ? "" : ",",
		       (unsigned long long)c->id,
		       (unsigned long long)c->owner,
		       (unsigned long long)c->frames,
		       (unsigned long long)c->remote,
		       (unsigned long long)c->cow, c->shares,
		       c->locked_ms_left);
	else
		printf("container %#llx owner %#llx frames %llu "
		       "remote %llu cow %llu shares %u%s\n",
		       (unsigned long long)c->id,
		       (unsigned long long)c->owner,
		       (unsigned long long)c->frames,
		       (unsigned long long)c->remote,
		       (unsigned long long)c->cow, c->shares,
		       c->locked_ms_left ? " locked" : "");
	return c->id;
}

static const struct listing task_listing = { tasks_page, task_print };
static const struct listing container_listing = { containers_page,
						   container_print };

/* "key = value" lines, as text or one JSON object. */
static void print_settings(char *text)
{
	bool first = true;

	if (!json) {
		fputs(text, stdout);
		return;
	}
	putchar('{');
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		char *eq = strstr(line, " = ");
		if (!eq)
			continue;
		*eq = 0;
		printf("%s", first ? "" : ",");
		jstr(line);
		putchar(':');
		jstr(eq + 3);
		first = false;
	}
	puts("}");
}

static error_t cmd_config(pm_t *pm)
{
	static char text[65536];
	size_t len;
	error_t err = pm_debug_config(pm, text, sizeof(text), &len);

	if (!err)
		print_settings(text);
	return err;
}

static error_t cmd_version(pm_t *pm)
{
	static char text[65536];
	const char *v = "?";
	size_t len;
	error_t err = pm_debug_config(pm, text, sizeof(text), &len);

	if (err)
		return err;
	if (!strncmp(text, "version = ", 10)) {
		v = text + 10;
		text[strcspn(text, "\n")] = 0;
	}
	if (json) {
		printf("{\"pmctl\":");
		jstr(PMCTL_VERSION);
		printf(",\"pmd\":");
		jstr(v);
		puts("}");
	} else {
		printf("pmctl %s\npmd %s\n", PMCTL_VERSION, v);
	}
	return 0;
}

static error_t cmd_ping(pm_t *pm, unsigned long node, unsigned long count)
{
	uint64_t rtt, best = UINT64_MAX, sum = 0;
	error_t err = 0;
	unsigned long k;

	for (k = 0; k < count && !err; k++) {
		err = pm_debug_ping(pm, (pm_node_t)node, &rtt);
		if (err)
			break;
		sum += rtt;
		if (rtt < best)
			best = rtt;
		if (!json && count <= 10)
			printf("node %lu: %.1f us\n", node, rtt / 1e3);
	}
	if (err)
		return err;
	if (json)
		printf("{\"node\":%lu,\"round_trips\":%lu,\"best_us\":%.1f,"
		       "\"mean_us\":%.1f}\n", node, count, best / 1e3,
		       sum / 1e3 / (double)count);
	else if (count > 10)
		printf("node %lu: %lu round trips, best %.1f us\n", node, count,
		       best / 1e3);
	return 0;
}

static error_t cmd_metrics(pm_t *pm)
{
	static char text[70000];
	size_t len;
	error_t err = pm_debug_metrics(pm, text, sizeof(text), &len);

	if (!err)
		fputs(text, stdout);
	return err;
}

static error_t cmd_drain(pm_t *pm, unsigned timeout_ms)
{
	uint64_t slots = 0;
	pm_node_t holder = 0;
	error_t err = pm_debug_drain(pm, timeout_ms, &slots, &holder);

	if (err) {
		if (holder)
			fprintf(stderr, "pmctl: drain: node %u still holds slots "
				"of this node, which goes on serving\n", holder);
		return err;
	}
	if (json)
		printf("{\"drained\":true,\"slots\":%llu}\n",
		       (unsigned long long)slots);
	else
		printf("drained: %llu slots lent went back to their homes; the "
		       "pmd stops\n", (unsigned long long)slots);
	return 0;
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *cmd, *shown;
	unsigned long node = 0, count = 1;
	pm_task_t task = 0;
	int i = 1, rc = 0, nargs;
	pm_t *pm;
	error_t err;

	while (i < argc && argv[i][0] == '-') {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage_text(stdout);
			return 0;
		} else if (!strcmp(argv[i], "--json")) {
			json = true;
			i++;
		} else if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
			sock = argv[i + 1];
			i += 2;
		} else {
			return usage();
		}
	}
	if (i >= argc)
		return usage();
	cmd = argv[i++];
	nargs = argc - i;
	if (!strcmp(cmd, "ping")) {
		char *end;
		if (nargs < 1 || nargs > 2)
			return usage();
		node = strtoul(argv[i], &end, 10);
		if (*end || node == 0 || node > 65534)
			return usage();
		if (nargs == 2) {
			count = strtoul(argv[i + 1], &end, 10);
			if (*end || count == 0 || count > 100000)
				return usage();
		}
	} else if (!strcmp(cmd, "drain")) {
		char *end;
		if (nargs == 2 && !strcmp(argv[i], "--timeout")) {
			count = strtoul(argv[i + 1], &end, 10);
			if (*end || count == 0 || count > 3600000)
				return usage();
		} else if (nargs) {
			return usage();
		} else {
			count = 0; /* the pmd's default */
		}
	} else if (!strcmp(cmd, "containers")) {
		char *end;
		if (nargs == 2 && !strcmp(argv[i], "--task")) {
			task = strtoull(argv[i + 1], &end, 0);
			if (*end || !task)
				return usage();
		} else if (nargs) {
			return usage();
		}
	} else if (nargs || (strcmp(cmd, "nodes") && strcmp(cmd, "stat") &&
			     strcmp(cmd, "tasks") && strcmp(cmd, "config") &&
			     strcmp(cmd, "version") && strcmp(cmd, "metrics"))) {
		return usage();
	}
	/* It maps nothing: no fault thread. */
	setenv("PM_NO_USERFAULTFD", "1", 0);
	shown = sock ? sock : getenv("PM_ENDPOINT") ? getenv("PM_ENDPOINT")
						    : PM_DEFAULT_SOCKET;
	err = pm_connect(sock, &pm);
	if (err) {
		fprintf(stderr, "pmctl: cannot reach the pmd at %s: %s\n", shown,
			strerror(err));
		return 1;
	}
	if (!strcmp(cmd, "nodes"))
		err = cmd_nodes(pm);
	else if (!strcmp(cmd, "stat"))
		err = cmd_stat(pm, &rc);
	else if (!strcmp(cmd, "tasks"))
		err = list_all(pm, &task_listing, 0);
	else if (!strcmp(cmd, "containers"))
		err = list_all(pm, &container_listing, task);
	else if (!strcmp(cmd, "config"))
		err = cmd_config(pm);
	else if (!strcmp(cmd, "version"))
		err = cmd_version(pm);
	else if (!strcmp(cmd, "ping"))
		err = cmd_ping(pm, node, count);
	else if (!strcmp(cmd, "drain"))
		err = cmd_drain(pm, (unsigned)count);
	else
		err = cmd_metrics(pm);
	if (err) {
		fprintf(stderr, "pmctl: %s (the pmd at %s): %s\n", cmd, shown,
			err == EPERM ? "only the pmd's user (or root) may ask"
				     : strerror(err));
		rc = 1;
	}
	pm_disconnect(pm);
	return rc;
}
