/*
 * JSON text walked, not parsed: for a request body that may be megabytes
 * of inline data of which one member matters (inspect.c), and for
 * config.json, edited in place so that every other byte stays as the user
 * wrote it (reset.c).  Each function takes a pointer into the text and its
 * end and returns where the thing it skips ends; none allocates.
 */
#include <stddef.h>
#include <string.h>

#include "jsontext.h"

/* Past the blanks at p. */
const char *
jt_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at '"': past the closing quote, or NULL when it never comes. */
const char *
jt_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\') {
			if (++p >= end)
				return NULL;
		} else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* Past one value starting at p (not blank), or NULL when it never ends. */
const char *
jt_value(const char *p, const char *end)
{
	const char	*s = p;
	int		 depth = 0;

	if (p >= end)
		return NULL;
	if (*p == '"')
		return jt_string(p, end);
	if (*p == '{' || *p == '[') {
		while (p < end) {
			if (*p == '"') {
				if ((p = jt_string(p, end)) == NULL)
					return NULL;
				continue;
			}
			if (*p == '{' || *p == '[')
				depth++;
			else if (*p == '}' || *p == ']')
				depth--;
			p++;
			if (depth == 0)
				return p;
		}
		return NULL;
	}
	while (p < end && strchr(",}] \t\r\n", *p) == NULL)
		p++;
	return p > s ? p : NULL;
}
