/*
 * usagescan.c: the token counts of an answer, read while it is relayed.
 */
#ifndef USAGESCAN_H
#define USAGESCAN_H

#include <stddef.h>
#include <stdint.h>

/*
 * Feed the scanner an answer body in any pieces.  The framing (JSON or
 * SSE) is taken from the first byte that is not blank; the mode says which
 * dialect: Gemini's usageMetadata or the OpenAI-compatible "usage".  Read
 * usage, error_seen, error_code and error_status at any time; the rest of
 * struct gem_scan is the scanner's own.
 */
#define GEM_SCAN_JSON		0	/* generateContent; non-SSE stream (array) */
#define GEM_SCAN_SSE		1	/* streamGenerateContent?alt=sse */
#define GEM_SCAN_OPENAI		2	/* /openai/: JSON or SSE, "usage" */

#define GEM_SCAN_CAP		8192	/* largest usage/error object read */
#define GEM_SCAN_DEPTH		64	/* nesting tracked exactly */

struct gem_usage {
	int64_t		 prompt;	/* promptTokenCount (includes cached) */
	int64_t		 candidates;	/* candidatesTokenCount */
	int64_t		 cached;	/* cachedContentTokenCount */
	int64_t		 thoughts;	/* thoughtsTokenCount */
	int64_t		 tool_use;	/* toolUsePromptTokenCount */
	int64_t		 total;		/* totalTokenCount */
	int		 seen;		/* a complete usage object was read */
};

struct gem_scan {
	struct gem_usage usage;		/* the last complete one: cumulative */
	int		 error_seen;	/* an {"error": {...}} in the answer */
	int		 error_code;	/* its "code", 0 when none */
	char		 error_status[32];	/* its "status", "" when none */
	uint64_t	 bytes;		/* fed so far */

	/* The scanner's own. */
	int		 mode;
	int		 framing;
	int		 sse_state;
	int		 sse_field;
	int		 sse_data;
	int		 sse_cr;
	int		 depth;
	int		 in_str;
	int		 esc;
	int		 want_key;
	int		 key_on;
	int		 pending;
	int		 cap_on;
	int		 cap_what;
	int		 cap_depth;
	int		 cap_over;
	size_t		 key_len;
	size_t		 cap_len;
	unsigned char	 stack[GEM_SCAN_DEPTH];
	char		 key[16];
	char		 cap[GEM_SCAN_CAP];
};

void		 gem_scan_init(struct gem_scan *, int);
void		 gem_scan_feed(struct gem_scan *, const char *, size_t);

#endif /* USAGESCAN_H */
