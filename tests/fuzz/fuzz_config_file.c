/*
 * fuzz_config_file.c - the configuration file, as pmd --config reads it
 * (pmd_config_load: the file, then the command line).
 *
 * The input is the file's text, written to a directory of the target's
 * own, which also holds a valid cluster file (cluster.conf, its key
 * beside it) for a file to name: @DIR@ in the input stands for that
 * directory. A file refused leaves nothing behind; one
 * accepted gives settings within their documented ranges. Inputs that
 * name a path outside that directory (/dev, /proc, /sys, ..) are not
 * read: a device can block, and what is there is not the input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "config.h"
#include "fuzz.h"

static char dir[64];

static void put(const char *name, const char *text, size_t len)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f || fchmod(fileno(f), 0600) < 0 || fwrite(text, 1, len, f) != len ||
	    fclose(f) != 0) {
		perror(path);
		abort();
	}
}

static void cleanup(void)
{
	static const char *const names[] = { "pmd.conf", "cluster.conf",
					     "cluster.key" };
	char path[128];

	for (unsigned i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	static const char key[] = "fuzzing-secret-0123456789abcdef\n";
	static const char conf[] = "[cluster]\nsecret_file = cluster.key\n"
		"[node 1]\naddress = 127.0.0.1:7100\n"
		"[node 2]\naddress = 127.0.0.1:7101\n";

	strcpy(dir, "/tmp/pmd-fuzz-XXXXXX");
	if (!mkdtemp(dir) || sodium_init() < 0)
		abort();

	put("cluster.key", key, sizeof(key) - 1);
	put("cluster.conf", conf, sizeof(conf) - 1);
	atexit(cleanup);
	return 0;
}

static void fail(const char *why)
{
	fprintf(stderr, "fuzz: %s\n", why);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[128], *text, *argv[4];
	size_t len = 0;
	struct pmd_config cfg;
	bool served = false;
	error_t err;

	if (!dir[0])
		LLVMFuzzerInitialize(NULL, NULL);
	if (memmem(data, size, "/dev", 4) || memmem(data, size, "/proc", 5) ||
	    memmem(data, size, "/sys", 4) || memmem(data, size, "..", 2))
		return 0;
	/* The file is the input, NUL bytes and all, with @DIR@ replaced. */
	text = malloc(size * (sizeof(dir) / 5 + 1) + 1);
	if (!text)
		abort();
	for (size_t i = 0; i < size;) {
		if (size - i >= 5 && !memcmp(data + i, "@DIR@", 5)) {
			memcpy(text + len, dir, strlen(dir));
			len += strlen(dir);
			i += 5;
		} else {
			text[len++] = (char)data[i++];
		}
	}
	put("pmd.conf", text, len);
	free(text);
	snprintf(path, sizeof(path), "%s/pmd.conf", dir);
	argv[0] = (char *)"pmd";
	argv[1] = (char *)"--config";
	argv[2] = path;
	argv[3] = NULL;
	err = pmd_config_load(&cfg, 3, argv, &served);
	if (!err && !served) {
		if (cfg.memory < PM_FRAME_SIZE)
			fail("memory of less than a frame");
		if (!cfg.node_id || !cfg.max_lock_ms || !cfg.stop_ms ||
		    cfg.stop_ms > 60000)
			fail("a setting out of its range");
		if (!memchr(cfg.socket, '\0', sizeof(cfg.socket)) ||
		    !cfg.socket[0])
			fail("no socket, or an unterminated one");
		if (cfg.cluster[0] && !cfg.cluster_conf)
			fail("a cluster file named but not loaded");
		if (cfg.cluster_conf &&
		    !pmd_cluster_node(cfg.cluster_conf, cfg.node_id))
			fail("this node not in its cluster file");
	}
	pmd_config_fini(&cfg);
	return 0;
}
