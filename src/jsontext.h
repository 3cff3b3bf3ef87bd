/*
 * jsontext.c: JSON text walked, not parsed.
 */
#ifndef JSONTEXT_H
#define JSONTEXT_H

const char	*jt_ws(const char *, const char *);
const char	*jt_string(const char *, const char *);
const char	*jt_value(const char *, const char *);

#endif /* JSONTEXT_H */
