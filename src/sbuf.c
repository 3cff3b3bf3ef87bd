/*
 * A growing output buffer for the answers whose size follows the number
 * of keys (/api/status_data's keys, /metrics): appends of text, numbers,
 * JSON strings and Prometheus label values.  An allocation failure is
 * remembered and every later append is ignored, so callers check once,
 * at the end (b->oom).
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"

int
sb_grow(struct sbuf *b, size_t more)
{
	size_t	 ncap;
	char	*np;

	if (b->oom)
		return -1;
	if (b->len + more + 1 <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 4096;
	while (ncap < b->len + more + 1) {
		if (ncap > SIZE_MAX / 2) {
			b->oom = 1;
			return -1;
		}
		ncap *= 2;
	}
	if ((np = realloc(b->p, ncap)) == NULL) {
		b->oom = 1;
		return -1;
	}
	b->p = np;
	b->cap = ncap;
	return 0;
}

void
sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (sb_grow(b, n) == -1)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void
sb_cstr(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

void
sb_u64(struct sbuf *b, uint64_t v)
{
	char	 d[24];
	size_t	 i = sizeof(d);

	do {
		d[--i] = '0' + v % 10;
		v /= 10;
	} while (v != 0);
	sb_add(b, d + i, sizeof(d) - i);
}

void
sb_i64(struct sbuf *b, int64_t v)
{
	if (v < 0) {
		sb_lit(b, "-");
		sb_u64(b, (uint64_t)0 - (uint64_t)v);
	} else
		sb_u64(b, (uint64_t)v);
}

/* A limit: the number, or null when there is none. */
void
sb_limit(struct sbuf *b, int64_t v)
{
	if (v < 0)
		sb_lit(b, "null");
	else
		sb_i64(b, v);
}

void
sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || sb_grow(b, (size_t)n) == -1)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
}

/*
 * A JSON string, quoted, escaped the way cJSON escapes: quote, backslash
 * and control characters; other bytes (UTF-8, such as the masked forms'
 * ellipsis) pass as they are.
 */
void
sb_jstr(struct sbuf *b, const char *s)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*p, *run;
	char			 esc[6];

	sb_lit(b, "\"");
	for (p = run = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		sb_add(b, (const char *)run, p - run);
		run = p + 1;
		switch (*p) {
		case '"':
			sb_lit(b, "\\\"");
			break;
		case '\\':
			sb_lit(b, "\\\\");
			break;
		case '\n':
			sb_lit(b, "\\n");
			break;
		case '\r':
			sb_lit(b, "\\r");
			break;
		case '\t':
			sb_lit(b, "\\t");
			break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 0xf];
			sb_add(b, esc, 6);
		}
	}
	sb_add(b, (const char *)run, p - run);
	sb_lit(b, "\"");
}

/* A Prometheus label value: backslash, quote and newline escaped. */
void
sb_label(struct sbuf *b, const char *s)
{
	const char	*p, *run;

	for (p = run = s; *p != '\0'; p++) {
		if (*p != '\\' && *p != '"' && *p != '\n')
			continue;
		sb_add(b, run, p - run);
		run = p + 1;
		if (*p == '\n')
			sb_lit(b, "\\n");
		else if (*p == '"')
			sb_lit(b, "\\\"");
		else
			sb_lit(b, "\\\\");
	}
	sb_add(b, run, p - run);
}

