/*
 * The HTTP module: http.c (heads: requests from clients, the pieces an
 * upstream's answer head shares, the answers we write ourselves) and
 * chunked.c (chunked bodies, both directions).
 */
#ifndef HTTP_H
#define HTTP_H

#include <stddef.h>
#include <stdint.h>

/*
 * HTTP/1.1 from clients.  The parser works on a buffer holding the start of
 * a connection's unread bytes; names and values point into that buffer (the
 * parser NUL-terminates them in place), so the request is valid until the
 * buffer is reused.
 */
#define HTTP_MAX_HEAD		(64 * 1024)	/* request line + headers */
#define HTTP_MAX_HEADERS	100

struct http_header {
	char		*name;
	char		*value;
};

struct http_request {
	char		*method;
	char		*target;	/* origin-form "/path?query", as sent */
	size_t		 path_len;	/* length of target up to '?' */
	int		 minor;		/* HTTP/1.<minor> */
	struct http_header hdr[HTTP_MAX_HEADERS];
	size_t		 nhdr;
	size_t		 head_len;	/* bytes of request line + headers */
	int64_t		 content_length;	/* -1 when absent */
	int		 chunked;	/* Transfer-Encoding: chunked */
	int		 keepalive;	/* connection may be reused */
	int		 expect_continue;
};

/*
 * What a head's header fields say about its framing, its connection and
 * expectations: http_parse_fields() tallies them for a request's head
 * and for an upstream answer's alike; each side then applies its rules.
 */
struct http_fields {
	int64_t		 content_length;	/* -1 when absent */
	int		 te;		/* a Transfer-Encoding field was seen */
	int		 te_chunked;	/* its "chunked" elements */
	int		 te_other;	/* any other coding */
	int		 conn_close;	/* Connection: close */
	int		 conn_keepalive;	/* Connection: keep-alive */
	int		 nhost;		/* Host fields */
	int		 expect_continue;	/* Expect: 100-continue */
	int		 expect_other;	/* an expectation we cannot meet */
};

/* What is wrong with a header section (in words: http_field_why). */
enum http_field_err {
	HTTP_FIELD_OK = 0,
	HTTP_FIELD_FOLD,	/* obs-fold: a line starts with SP or HTAB */
	HTTP_FIELD_WS_COLON,	/* whitespace between the name and ':' */
	HTTP_FIELD_NAME,	/* a name that is not a token */
	HTTP_FIELD_EMPTY_NAME,
	HTTP_FIELD_CTL,		/* a control character in a value */
	HTTP_FIELD_BARE_CR,
	HTTP_FIELD_TOO_MANY,	/* more fields than the caller has room for */
	HTTP_FIELD_LENGTH	/* Content-Length invalid, or two that differ */
};

/* Incremental decoder of a chunked body (chunked.c). */
struct http_chunked {
	int		 state;
	uint64_t	 remain;	/* bytes left in the current chunk */
	size_t		 line;		/* length of the size/trailer line so far */
	int		 done;
};

enum http_parse {
	HTTP_PARSE_ERROR = -1,
	HTTP_PARSE_MORE = 0,
	HTTP_PARSE_DONE = 1
};

/* http.c */
int		 http_hexval(unsigned char);
int		 http_head_scan(const char *, size_t, size_t *, size_t *,
		    size_t *);
enum http_field_err http_parse_fields(char **, struct http_header *, size_t,
		    size_t *, struct http_fields *);
const char	*http_field_why(enum http_field_err, int);
int		 http_parse_head(char *, size_t, struct http_request *, int *,
		    const char **);
const char	*http_header(const struct http_request *, const char *);
const char	*http_lookup(const struct http_header *, size_t, const char *);
const char	*http_bearer(const char *, size_t *);
int		 http_query_param(const char *, const char *, char *, size_t);
const char	*http_reason(int);
const char	*http_status_name(int);
int		 http_error_body(char *, size_t, int, const char *);

/* chunked.c */
int		 http_chunked_decode(struct http_chunked *, const char *, size_t,
		    size_t *, char *, size_t *, const char **);

#endif /* HTTP_H */
