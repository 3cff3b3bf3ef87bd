/*
 * The shared-memory segment: sizing, creation and the header check.
 *
 * Called by the master only, before it forks: shm_open + ftruncate + mmap,
 * then shm_unlink at once, so the workers inherit the mapping and a crash
 * leaves no name behind.  Tables are sized from the config with headroom,
 * so that a reload adding a few keys fits; a reload that needs more room
 * makes a new segment (see keys.c's shm_publish).  Size stays proportional
 * to what is configured: keys x models usage cells dominate.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shm.h"

#define ALIGN(x)	(((x) + 63) & ~(size_t)63)

/*
 * Room for the configured counts (projects: the named ones), plus
 * headroom for reloads.
 */
void
shm_sizes_for(uint32_t keys, uint32_t models, uint32_t workers,
    uint32_t projects, struct shm_sizes *sz)
{
	sz->keys = keys + keys / 4 + 8;
	sz->models = models + models / 2 + SHM_EXTRA_MODELS;
	sz->workers = workers;
	sz->affinity = SHM_AFFINITY;
	sz->projects = projects + projects / 4 + 8;
}

static void
shm_offsets(const struct shm_sizes *sz, uint64_t off[7], size_t *total)
{
	size_t	 o;

	o = ALIGN(sizeof(struct shm_header));
	off[0] = o;
	o = ALIGN(o + (size_t)sz->keys * sizeof(struct shm_key));
	off[1] = o;
	o = ALIGN(o + (size_t)sz->models * sizeof(struct shm_model));
	off[2] = o;
	o = ALIGN(o + (size_t)sz->keys * sz->models * sizeof(struct shm_usage));
	off[3] = o;
	o = ALIGN(o + (size_t)sz->workers * sizeof(struct shm_slot));
	off[4] = o;
	o = ALIGN(o + (size_t)sz->affinity * sizeof(struct shm_affinity));
	off[5] = o;
	o = ALIGN(o + (size_t)sz->projects * sizeof(struct shm_project));
	off[6] = o;
	o = ALIGN(o + (size_t)sz->projects * sz->models *
	    sizeof(struct shm_usage));
	*total = o;
}

size_t
shm_layout_size(const struct shm_sizes *sz)
{
	uint64_t	 off[7];
	size_t		 total;

	shm_offsets(sz, off, &total);
	return total;
}

/* Does the segment have room for these sizes? */
int
shm_fits(const struct shm_header *h, const struct shm_sizes *need)
{
	return need->keys <= h->max_keys && need->models <= h->max_models &&
	    need->workers <= h->max_workers &&
	    need->projects <= h->max_projects;
}

/*
 * Create a zeroed segment with the header filled in and the lock ready,
 * started at now (ms since the epoch).  Returns NULL with errno set on
 * failure.
 */
struct shm_header *
shm_create(const struct shm_sizes *sz, int64_t now)
{
	struct shm_header	*h;
	struct timespec		 ts;
	uint64_t		 off[7];
	size_t			 total;
	char			 name[64];
	uint32_t		 i;
	int			 fd, saved;

	shm_offsets(sz, off, &total);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(name, sizeof(name), "/gemini-looper.%ld.%ld",
	    (long)getpid(), (long)ts.tv_nsec);
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd == -1)
		return NULL;
	/* Nobody else needs the name: workers inherit the mapping. */
	(void)shm_unlink(name);
	if (ftruncate(fd, (off_t)total) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return NULL;
	}
	h = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	saved = errno;
	close(fd);
	if (h == MAP_FAILED) {
		errno = saved;
		return NULL;
	}
	/* ftruncate gave us zeroes: only the header, and the slots' "no
	 * Live session", need writing. */
	h->magic = SHM_MAGIC;
	h->version = SHM_VERSION;
	h->size = total;
	h->max_keys = sz->keys;
	h->max_models = sz->models;
	h->max_workers = sz->workers;
	h->max_affinity = sz->affinity;
	h->max_projects = sz->projects;
	h->off_keys = off[0];
	h->off_models = off[1];
	h->off_usage = off[2];
	h->off_slots = off[3];
	h->off_affinity = off[4];
	h->off_projects = off[5];
	h->off_pusage = off[6];
	h->default_model = -1;
	h->started = now;
	for (i = 0; i < sz->workers; i++)
		shm_live_clear(SHM_SLOTS(h) + i);
	if (shm_lock_init(&h->lock) != 0) {
		munmap(h, total);
		errno = EINVAL;
		return NULL;
	}
	return h;
}

/* Is this a segment of ours, of this layout?  0 if so, -1 if not. */
int
shm_check(const struct shm_header *h)
{
	if (h == NULL || h->magic != SHM_MAGIC || h->version != SHM_VERSION)
		return -1;
	if (h->off_affinity + (uint64_t)h->max_affinity *
	    sizeof(struct shm_affinity) > h->size ||
	    h->off_pusage + (uint64_t)h->max_projects * h->max_models *
	    sizeof(struct shm_usage) > h->size)
		return -1;
	return 0;
}

void
shm_destroy(struct shm_header *h)
{
	if (h != NULL)
		munmap(h, h->size);
}
