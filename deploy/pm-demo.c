/*
 * pm-demo - a small task that shows the container interface at work: it
 * creates a container, allocates frames, maps them, stores through the
 * mapping, reads and writes through the pmd, and prints what it saw and
 * what the pmd charged for it.
 *
 * usage: pm-demo [SOCKET]   (default: $PM_ENDPOINT, else the pmd default)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pm/pm.h>

#define FRAMES 16

static int check(const char *what, error_t err)
{
	if (err)
		fprintf(stderr, "pm-demo: %s: %s\n", what, strerror(err));
	return err != 0;
}

int main(int argc, char **argv)
{
	struct pm_container_stat cs;
	struct pm_task_stat ts;
	struct pm_node_info node;
	int count = FRAMES, n = 1, granted = 0;
	char msg[64] = { 0 };
	pm_task_t self;
	container_t c;
	uint8_t *map;
	pm_t *pm;

	if (check("connect", pm_connect(argc > 1 ? argv[1] : NULL, &pm)))
		return 1;
	pm_self(pm, &self);
	if (check("nodes", pm_nodes(pm, &node, &n)))
		return 1;
	printf("task %#llx on node %u (%llu of %llu frames free)\n",
	       (unsigned long long)self, node.id,
	       (unsigned long long)node.frames_free,
	       (unsigned long long)node.frames_total);

	if (check("create", pm_container_create(pm, &c)) ||
	    check("allocate", pm_container_allocate(pm, c, 0, &count, 0)))
		return 1;
	printf("allocated %d frames in container %#llx\n", count,
	       (unsigned long long)c);

	if (check("map", pm_container_map(pm, c, 0, FRAMES,
					  CONT_MAP_READ | CONT_MAP_WRITE,
					  (void **)&map, &granted)))
		return 1;
	printf("mapped %d frames at %p (%s)\n", FRAMES, (void *)map,
	       granted & CONT_MAP_WRITE ? "read/write" : "read-only");
	for (int f = 0; f < FRAMES; f++)
		snprintf((char *)map + (size_t)f * PM_FRAME_SIZE, 64,
			 "frame %d, stored through the mapping", f);

	if (check("read", pm_container_read(pm, c, 7, 0, msg, sizeof(msg) - 1)))
		return 1;
	printf("read through the pmd from frame 7: \"%s\"\n", msg);

	const char *note = "written through the pmd";
	if (check("write", pm_container_write(pm, c, 3, PM_FRAME_SIZE - 8, note,
					      strlen(note) + 1)))
		return 1;
	printf("wrote across frames 3-4; the mapping sees: \"%.8s\" + \"%s\"\n",
	       (char *)map + 4 * PM_FRAME_SIZE - 8, (char *)map + 4 * PM_FRAME_SIZE);

	count = 4;
	error_t err = pm_container_allocate(pm, c, 14, &count, CONT_ALLOC_PARTIAL);
	printf("allocating frames 14-17 again: %s, %d allocated (frames 14-15 "
	       "exist)\n", strerror(err), count);

	pm_task_stat(pm, &ts);
	pm_container_stat(pm, c, &cs);
	printf("container: %llu frames; task charged %llu of %llu guaranteed\n",
	       (unsigned long long)cs.frames, (unsigned long long)ts.allocated,
	       (unsigned long long)ts.guaranteed);

	pm_container_unmap(pm, map, FRAMES);
	if (check("destroy", pm_container_destroy(pm, c)))
		return 1;
	pm_task_stat(pm, &ts);
	printf("destroyed the container; task charged %llu frames\n",
	       (unsigned long long)ts.allocated);
	pm_disconnect(pm);
	return 0;
}
