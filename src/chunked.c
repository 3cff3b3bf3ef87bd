/*
 * The chunked transfer coding (RFC 9112 §7.1), decoded as it arrives: a
 * client's request body (request.c) and an upstream's answer (upread.c)
 * alike, split anywhere, with its state in the caller's struct
 * http_chunked.  No allocation, no lock.
 *
 * Strict, as the head parser is (http.c): a size line, a chunk's CRLF or a
 * trailer that two parsers could read two ways is refused, and the sizes
 * and the trailer section are bounded, so that neither a smuggled body
 * nor an endless one gets through.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http.h"

#define HTTP_CHUNK_MAX		((uint64_t)1 << 62)	/* largest chunk */
#define HTTP_CHUNK_LINE_MAX	4096	/* chunk-size line with extensions */
#define HTTP_TRAILER_MAX	HTTP_MAX_HEAD	/* whole trailer section */

/* States of struct http_chunked; 0 is where a zeroed struct starts. */
enum {
	CH_SIZE0 = 0,	/* before the first hex digit of a chunk size */
	CH_SIZE,	/* in the hex digits */
	CH_SIZE_WS,	/* BWS after the digits, before ';' */
	CH_EXT,		/* in chunk extensions, ignored */
	CH_SIZE_LF,	/* CR seen, LF expected */
	CH_DATA,
	CH_DATA_CR,	/* chunk data done, CRLF expected */
	CH_DATA_LF,
	CH_TRAILER0,	/* at the start of a trailer line */
	CH_TRAILER,	/* in a trailer line, ignored */
	CH_TRAILER_LF,
	CH_END_LF	/* CR of the final empty line seen */
};

/* The decoder stops at in[i]: *consumed, *outlen and *why say so. */
static int
http_chunk_fail(size_t *consumed, size_t i, size_t *outlen, size_t o,
    const char **why, const char *msg)
{
	*consumed = i;
	*outlen = o;
	*why = msg;
	return HTTP_PARSE_ERROR;
}

/*
 * Decode the next inlen bytes of a chunked body (RFC 9112 §7.1) into out,
 * which has room for inlen bytes and may be in itself (data only moves
 * towards the front).  The state lives in *c, zeroed by the caller once per
 * body, so the input may be split anywhere.  Returns HTTP_PARSE_MORE when
 * all of in was used, HTTP_PARSE_DONE when the body ended after *consumed
 * bytes (the rest is the next request's), or HTTP_PARSE_ERROR.
 */
int
http_chunked_decode(struct http_chunked *c, const char *in, size_t inlen,
    size_t *consumed, char *out, size_t *outlen, const char **why)
{
	size_t		 i = 0, o = 0, n;
	unsigned char	 ch;
	int		 d;

	*consumed = 0;
	*outlen = 0;
	if (c->done)
		return HTTP_PARSE_DONE;

	while (i < inlen) {
		if (c->state == CH_DATA) {
			n = inlen - i;
			if (n > c->remain)
				n = c->remain;
			memmove(out + o, in + i, n);
			i += n;
			o += n;
			c->remain -= n;
			if (c->remain == 0)
				c->state = CH_DATA_CR;
			continue;
		}

		ch = in[i++];
		if (c->state <= CH_EXT && ch != '\r' &&
		    ++c->line > HTTP_CHUNK_LINE_MAX)
			return http_chunk_fail(consumed, i, outlen, o, why,
			    "chunk size line too long");

		switch (c->state) {
		case CH_SIZE0:
		case CH_SIZE:
			if ((d = http_hexval(ch)) != -1) {
				/* Shift only what cannot overflow. */
				if (c->remain > HTTP_CHUNK_MAX >> 4 ||
				    (c->remain = c->remain << 4 | d) >
				    HTTP_CHUNK_MAX)
					return http_chunk_fail(consumed, i,
					    outlen, o, why,
					    "chunk size too large");
				c->state = CH_SIZE;
				break;
			}
			if (c->state == CH_SIZE0)
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "invalid chunk size");
			/* FALLTHROUGH */
		case CH_SIZE_WS:
			if (ch == ' ' || ch == '\t')
				c->state = CH_SIZE_WS;
			else if (ch == ';')
				c->state = CH_EXT;
			else if (ch == '\r' && c->state == CH_SIZE)
				c->state = CH_SIZE_LF;
			else if (ch == '\n')
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "bare LF in chunk size line");
			else
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "invalid chunk size");
			break;
		case CH_EXT:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (ch == '\n')
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "bare LF in chunk size line");
			else if ((ch < ' ' && ch != '\t') || ch == 0x7f)
				return http_chunk_fail(consumed, i, outlen, o,
				    why,
				    "control character in chunk extension");
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "bare CR in chunk size line");
			c->line = 0;
			c->state = c->remain == 0 ? CH_TRAILER0 : CH_DATA;
			break;
		case CH_DATA_CR:
			if (ch != '\r')
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "chunk data not followed by CRLF");
			c->state = CH_DATA_LF;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "chunk data not followed by CRLF");
			c->state = CH_SIZE0;
			break;
		case CH_TRAILER0:
		case CH_TRAILER:
			/*
			 * Trailers produce no output, so without a bound a
			 * client could keep a worker reading forever.
			 */
			if (++c->line > HTTP_TRAILER_MAX)
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "trailer section too large");
			if (ch == '\r')
				c->state = c->state == CH_TRAILER0 ?
				    CH_END_LF : CH_TRAILER_LF;
			else if (ch == '\n')
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "bare LF in trailer section");
			else if ((ch < ' ' && ch != '\t') || ch == 0x7f)
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "control character in trailer field");
			else
				c->state = CH_TRAILER;
			break;
		case CH_TRAILER_LF:
			if (ch != '\n')
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "bare CR in trailer section");
			c->state = CH_TRAILER0;
			break;
		case CH_END_LF:
			if (ch != '\n')
				return http_chunk_fail(consumed, i, outlen, o,
				    why, "bare CR at end of chunked body");
			c->done = 1;
			*consumed = i;
			*outlen = o;
			return HTTP_PARSE_DONE;
		default:
			return http_chunk_fail(consumed, i, outlen, o, why,
			    "chunked decoder in an unknown state");
		}
	}
	*consumed = i;
	*outlen = o;
	return HTTP_PARSE_MORE;
}
