/*
 * Upstream answers more than one unit suite reads, shaped like ones
 * captured in public issue threads; every key in them is a fake.
 */
#ifndef CHECK_FIXTURES_H
#define CHECK_FIXTURES_H

#define FIX_KEY	"AIzaSyDUMMYdummy0123456789abcdefghijKLM"

/* continue #10902: a suspended key, echoed whole twice. */
static const char fix_b403_suspended[] =
"{\n  \"error\": {\n    \"code\": 403,\n    \"message\": \"Permission denied: "
"Consumer 'api_key:" FIX_KEY "' has been suspended.\",\n    \"status\": "
"\"PERMISSION_DENIED\",\n    \"details\": [\n      {\n        \"@type\": "
"\"type.googleapis.com/google.rpc.ErrorInfo\",\n        \"reason\": "
"\"CONSUMER_SUSPENDED\",\n        \"domain\": \"googleapis.com\",\n"
"        \"metadata\": {\n          \"consumer\": \"projects/895908428397\",\n"
"          \"service\": \"generativelanguage.googleapis.com\",\n"
"          \"containerInfo\": \"api_key:" FIX_KEY "\"\n        }\n      }\n"
"    ]\n  }\n}\n";

#endif /* CHECK_FIXTURES_H */
