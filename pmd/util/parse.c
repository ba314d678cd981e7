/* parse.c - see parse.h. */
#include "parse.h"

#include <ctype.h>
#include <stdlib.h>

error_t pmd_parse_u64(const char *s, uint64_t max, uint64_t *v_out)
{
	unsigned long long v;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return errno == ERANGE || v > max ? ERANGE : EINVAL;
	*v_out = v;
	return 0;
}

error_t pmd_parse_size(const char *s, uint64_t *bytes_out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return ERANGE;
	switch (toupper((unsigned char)*end)) {
	case 0: break;
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	default: return EINVAL;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end)
		return EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return ERANGE;
	*bytes_out = (uint64_t)v << shift;
	return 0;
}
