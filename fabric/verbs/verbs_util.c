/*
 * verbs_util.c - the small pieces every file of the verbs backend uses:
 * the clock, socket addresses (a verbs endpoint's name is its listening
 * address), the address table's lookups, and completions made here
 * rather than by the device.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fab_verbs.h"

uint64_t fvb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *fvb_sa_str(const struct sockaddr_storage *sa, char *buf,
		       size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		snprintf(buf, len, "(family %u)", sa->ss_family);
	}
	return buf;
}

error_t fvb_sa_parse(const void *data, size_t len,
		     struct sockaddr_storage *sa_out, socklen_t *len_out)
{
	struct sockaddr_storage sa;
	sa_family_t family;

	if (len < sizeof(family))
		return EINVAL;
	memcpy(&family, data, sizeof(family));
	memset(&sa, 0, sizeof(sa));
	if (family == AF_INET && len == sizeof(struct sockaddr_in)) {
		struct sockaddr_in in, *out = (void *)&sa;

		memcpy(&in, data, sizeof(in));
		if (!in.sin_port || in.sin_addr.s_addr == htonl(INADDR_ANY))
			return EINVAL;
		out->sin_family = AF_INET;
		out->sin_port = in.sin_port;
		out->sin_addr = in.sin_addr;
	} else if (family == AF_INET6 && len == sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 in6, *out = (void *)&sa;

		memcpy(&in6, data, sizeof(in6));
		if (!in6.sin6_port || IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr))
			return EINVAL;
		out->sin6_family = AF_INET6;
		out->sin6_port = in6.sin6_port;
		out->sin6_addr = in6.sin6_addr;
		out->sin6_scope_id = in6.sin6_scope_id;
	} else {
		return EINVAL;
	}
	*sa_out = sa;
	*len_out = (socklen_t)len;
	return 0;
}

bool fvb_sa_equal(const struct sockaddr_storage *a, socklen_t alen,
		  const struct sockaddr_storage *b, socklen_t blen)
{
	return alen == blen && !memcmp(a, b, alen);
}

uint64_t fvb_av_addr(const struct fvb_ep *vep, uint32_t index)
{
	return (uint64_t)vep->av[index].gen << 32 | index;
}

struct fvb_av *fvb_av_get(struct fvb_ep *vep, uint64_t addr)
{
	uint32_t index = (uint32_t)addr;

	if (addr == FAB_PEER_NONE || index >= vep->nav || !vep->av[index].used ||
	    vep->av[index].gen != (uint32_t)(addr >> 32))
		return NULL;
	return &vep->av[index];
}

void fvb_done(struct fvb_ep *vep, struct fab_op *op, error_t status)
{
	size_t tail = (vep->done_head + vep->done_n) % vep->done_cap;

	/* Cannot overflow: every slot is reported at most once, and the ring
	 * holds as many as there are slots. */
	vep->done[tail] = (struct fab_comp){ .op = op, .status = status,
					     .src = FAB_PEER_NONE };
	vep->done_n++;
	vep->kick = true;
}
