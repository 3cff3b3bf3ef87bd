/*
 * The token counts of an answer, found while it is relayed: a streaming
 * scanner fed the answer in whatever pieces it arrives (gem_scan_feed),
 * in any framing the API uses (one JSON object, SSE events, the JSON
 * array of a stream without alt=sse), without holding the answer in
 * memory.  usageMetadata is cumulative in a stream: the last complete
 * one wins.  An {"error": ...} object in the answer is noticed too.
 *
 * Called by relay.c for every relayed answer.  No I/O, no globals, no
 * locks: all state is the caller's struct gem_scan.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "usagescan.h"
#include "wire.h"

/*
 * The usage scanner.
 *
 * A byte-level JSON tokenizer that keeps only what it needs: whether it is
 * in a string (and after a backslash), the nesting (a bit per level), and
 * whether the next string is a member name.  A member named usageMetadata
 * ("usage" on the OpenAI path) or "error" of a response object (a top-level
 * object, or an element of a top-level array: the non-SSE stream) whose
 * value is an object has that object's bytes copied into s->cap and parsed
 * with cJSON when it closes.  Names anywhere else are not even collected,
 * so neither the model's text nor a function call's arguments can fake
 * usage.  SSE is a filter in front: the values of "data:" lines go to the
 * tokenizer, and a blank line (the end of an event) resets it, so that one
 * broken event cannot derail the ones after it.  All state lives in
 * struct gem_scan, which is why any split of the input gives the same
 * result; memory is that struct, whatever the answer's size.
 */
enum {
	GEM_F_UNKNOWN = 0,
	GEM_F_JSON,
	GEM_F_SSE
};

enum {
	GEM_SSE_LINE = 0,	/* at the start of a line */
	GEM_SSE_FIELD,		/* in the field name */
	GEM_SSE_DATA,		/* in the value of a data field */
	GEM_SSE_SKIP		/* in any other line */
};

enum {
	GEM_T_NONE = 0,
	GEM_T_USAGE,
	GEM_T_ERROR
};

#define GEM_OBJ		1
#define GEM_ARR		2

void
gem_scan_init(struct gem_scan *s, int mode)
{
	/* cap[] is read only up to cap_len: its 8 KiB need no zeroing. */
	memset(s, 0, offsetof(struct gem_scan, cap));
	s->mode = mode;
}

static void
gem_scan_reset_json(struct gem_scan *s)
{
	s->depth = 0;
	s->in_str = 0;
	s->esc = 0;
	s->want_key = 0;
	s->key_on = 0;
	s->pending = GEM_T_NONE;
	s->cap_on = 0;
}

static int
gem_scan_inner(const struct gem_scan *s)
{
	if (s->depth <= 0 || s->depth > GEM_SCAN_DEPTH)
		return 0;
	return s->stack[s->depth - 1];
}

/* In a response object: where usageMetadata and error are members. */
static int
gem_scan_top(const struct gem_scan *s)
{
	if (s->depth == 1)
		return s->stack[0] == GEM_OBJ;
	if (s->depth == 2)
		return s->stack[0] == GEM_ARR && s->stack[1] == GEM_OBJ;
	return 0;
}

static void
gem_scan_cap(struct gem_scan *s, const char *p, size_t n)
{
	if (s->cap_over)
		return;
	if (n > sizeof(s->cap) - s->cap_len) {
		s->cap_over = 1;	/* not ours to keep: skip this one */
		return;
	}
	memcpy(s->cap + s->cap_len, p, n);
	s->cap_len += n;
}

static void
gem_scan_key(struct gem_scan *s, const char *p, size_t n)
{
	if (s->key_len + n >= sizeof(s->key)) {
		s->key_len = sizeof(s->key);	/* too long for a name we want */
		return;
	}
	memcpy(s->key + s->key_len, p, n);
	s->key_len += n;
}

static void
gem_scan_keydone(struct gem_scan *s)
{
	const char	*usage = s->mode == GEM_SCAN_OPENAI ? "usage" :
			    "usageMetadata";

	s->key_on = 0;
	s->pending = GEM_T_NONE;
	if (s->key_len >= sizeof(s->key))
		return;
	if (s->key_len == strlen(usage) &&
	    memcmp(s->key, usage, s->key_len) == 0)
		s->pending = GEM_T_USAGE;
	else if (s->key_len == 5 && memcmp(s->key, "error", 5) == 0)
		s->pending = GEM_T_ERROR;
}

static void
gem_scan_usage(struct gem_scan *s, const cJSON *o)
{
	struct gem_usage	 u;
	const cJSON		*d;

	memset(&u, 0, sizeof(u));
	if (s->mode == GEM_SCAN_OPENAI) {
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "prompt_tokens"), &u.prompt);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "completion_tokens"), &u.candidates);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "total_tokens"), &u.total);
		d = cJSON_GetObjectItemCaseSensitive(o, "prompt_tokens_details");
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(d,
		    "cached_tokens"), &u.cached);
		d = cJSON_GetObjectItemCaseSensitive(o,
		    "completion_tokens_details");
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(d,
		    "reasoning_tokens"), &u.thoughts);
	} else {
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "promptTokenCount"), &u.prompt);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "candidatesTokenCount"), &u.candidates);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "cachedContentTokenCount"), &u.cached);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "thoughtsTokenCount"), &u.thoughts);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "toolUsePromptTokenCount"), &u.tool_use);
		(void)gem_json_int(cJSON_GetObjectItemCaseSensitive(o,
		    "totalTokenCount"), &u.total);
	}
	/* Cumulative in every chunk: the last one replaces, never adds. */
	u.seen = 1;
	s->usage = u;
}

/* The captured object just closed. */
static void
gem_scan_done(struct gem_scan *s)
{
	cJSON		*o;
	const cJSON	*st;
	int64_t		 code;

	s->cap_on = 0;
	if (s->cap_what == GEM_T_ERROR) {
		s->error_seen = 1;
		s->error_code = 0;
		s->error_status[0] = '\0';
	}
	if (s->cap_over)
		return;
	if ((o = cJSON_ParseWithLength(s->cap, s->cap_len)) == NULL)
		return;
	if (s->cap_what == GEM_T_USAGE)
		gem_scan_usage(s, o);
	else {
		if (gem_json_int(cJSON_GetObjectItemCaseSensitive(o, "code"),
		    &code) == 0 && code < 1000)
			s->error_code = (int)code;
		st = cJSON_GetObjectItemCaseSensitive(o, "status");
		if (cJSON_IsString(st))
			gem_idcopy(s->error_status, sizeof(s->error_status),
			    st->valuestring, strlen(st->valuestring));
	}
	cJSON_Delete(o);
}

/* Where in p[i..n) the first '"' or '\\' is, or n: memchr is vectorised. */
static size_t
gem_strspan(const char *p, size_t i, size_t n)
{
	const char	*q, *b;

	q = memchr(p + i, '"', n - i);
	b = memchr(p + i, '\\', (q != NULL ? (size_t)(q - p) : n) - i);
	if (b != NULL)
		return b - p;
	return q != NULL ? (size_t)(q - p) : n;
}

/* Inside a string: up to its end, or the end of the piece.  The new i. */
static size_t
gem_scan_str(struct gem_scan *s, const char *p, size_t i, size_t n)
{
	size_t	 j;
	char	 c;

	if (s->esc) {
		s->esc = 0;
		if (s->cap_on)
			gem_scan_cap(s, p + i, 1);
		return i + 1;
	}
	/* The bulk of an answer is text: skip it in one go. */
	j = gem_strspan(p, i, n);
	if (j > i) {
		if (s->cap_on)
			gem_scan_cap(s, p + i, j - i);
		if (s->key_on)
			gem_scan_key(s, p + i, j - i);
		return j;
	}
	c = p[i];
	if (s->cap_on)
		gem_scan_cap(s, p + i, 1);
	if (c == '\\') {
		s->esc = 1;
		if (s->key_on)	/* no name we want is escaped */
			s->key_len = sizeof(s->key);
		return i + 1;
	}
	s->in_str = 0;
	if (s->key_on)
		gem_scan_keydone(s);
	return i + 1;
}

static void
gem_scan_json(struct gem_scan *s, const char *p, size_t n)
{
	size_t	 i = 0, j;
	char	 c;

	while (i < n) {
		if (s->in_str) {
			i = gem_scan_str(s, p, i, n);
			continue;
		}

		c = p[i];
		/* Pretty-printed answers indent every line: a run of blanks
		 * goes in one step. */
		if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
			for (j = i + 1; j < n && (p[j] == ' ' || p[j] == '\n' ||
			    p[j] == '\r' || p[j] == '\t'); j++)
				;
			if (s->cap_on)
				gem_scan_cap(s, p + i, j - i);
			i = j;
			continue;
		}
		if (s->cap_on)
			gem_scan_cap(s, p + i, 1);
		i++;
		switch (c) {
		case ':':
			break;
		case '"':
			s->in_str = 1;
			s->pending = GEM_T_NONE;
			if (s->want_key && gem_scan_inner(s) == GEM_OBJ) {
				s->want_key = 0;
				if (!s->cap_on && gem_scan_top(s)) {
					s->key_on = 1;
					s->key_len = 0;
				}
			}
			break;
		case ',':
			s->pending = GEM_T_NONE;
			s->want_key = gem_scan_inner(s) == GEM_OBJ;
			break;
		case '{':
		case '[':
			if (c == '{' && s->pending != GEM_T_NONE && !s->cap_on) {
				s->cap_on = 1;
				s->cap_what = s->pending;
				s->cap_depth = s->depth;
				s->cap_len = 0;
				s->cap_over = 0;
				gem_scan_cap(s, "{", 1);
			}
			s->pending = GEM_T_NONE;
			if (s->depth < GEM_SCAN_DEPTH)
				s->stack[s->depth] = c == '{' ? GEM_OBJ : GEM_ARR;
			if (s->depth < INT_MAX)
				s->depth++;
			s->want_key = c == '{';
			break;
		case '}':
		case ']':
			s->pending = GEM_T_NONE;
			s->want_key = 0;
			if (s->depth == 0)
				break;	/* stray: nothing to close */
			s->depth--;
			if (s->cap_on && s->depth == s->cap_depth)
				gem_scan_done(s);
			break;
		default:
			/* Numbers, true, false, null, or junk: a scalar. */
			s->pending = GEM_T_NONE;
			break;
		}
	}
}

/* The end of an SSE line. */
static void
gem_scan_eol(struct gem_scan *s, char c)
{
	if (s->sse_state == GEM_SSE_LINE)
		gem_scan_reset_json(s);		/* blank line: event over */
	else if (s->sse_state == GEM_SSE_DATA)
		gem_scan_json(s, "\n", 1);	/* data lines join with LF */
	s->sse_state = GEM_SSE_LINE;
	s->sse_field = 0;
	s->sse_data = 1;
	s->sse_cr = c == '\r';
}

static void
gem_scan_sse(struct gem_scan *s, const char *p, size_t n)
{
	static const char	 data[] = "data";
	size_t			 i = 0, j;
	char			 c;

	while (i < n) {
		c = p[i];
		if (s->sse_cr) {
			s->sse_cr = 0;
			if (c == '\n') {	/* the LF of a CRLF */
				i++;
				continue;
			}
		}
		switch (s->sse_state) {
		case GEM_SSE_LINE:
		case GEM_SSE_FIELD:
			i++;
			if (c == '\r' || c == '\n') {
				gem_scan_eol(s, c);
				break;
			}
			if (s->sse_state == GEM_SSE_LINE) {
				s->sse_state = GEM_SSE_FIELD;
				s->sse_field = 0;
				s->sse_data = 1;
			}
			if (c == ':') {
				s->sse_state = s->sse_data && s->sse_field == 4 ?
				    GEM_SSE_DATA : GEM_SSE_SKIP;
				break;
			}
			if (s->sse_field >= 4 || c != data[s->sse_field])
				s->sse_data = 0;
			if (s->sse_field < INT_MAX)
				s->sse_field++;
			break;
		case GEM_SSE_DATA:
		case GEM_SSE_SKIP:
			for (j = i; j < n && p[j] != '\r' && p[j] != '\n'; j++)
				;
			if (s->sse_state == GEM_SSE_DATA && j > i)
				gem_scan_json(s, p + i, j - i);
			i = j;
			if (i < n) {
				gem_scan_eol(s, p[i]);
				i++;
			}
			break;
		}
	}
}

/*
 * Feeds the next piece of an answer body (already de-chunked).  The framing
 * is read off the first byte that is not blank whatever the mode says:
 * JSON starts with { or [, an event stream never does, and an API that
 * answers alt=sse with a JSON error body is then still read right.
 */
void
gem_scan_feed(struct gem_scan *s, const char *p, size_t n)
{
	unsigned char	 c;

	s->bytes += n;
	while (s->framing == GEM_F_UNKNOWN && n > 0) {
		c = (unsigned char)*p;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
		    c == 0xef || c == 0xbb || c == 0xbf) {	/* BOM too */
			p++;
			n--;
			continue;
		}
		s->framing = (c == '{' || c == '[') ? GEM_F_JSON : GEM_F_SSE;
	}
	if (n == 0)
		return;
	if (s->framing == GEM_F_JSON)
		gem_scan_json(s, p, n);
	else
		gem_scan_sse(s, p, n);
}
