#include "curl_shim.h"

CURLcode bn_curl_set_long(CURL *c, CURLoption o, long v) { return curl_easy_setopt(c, o, v); }
CURLcode bn_curl_set_string(CURL *c, CURLoption o, const char *v) { return curl_easy_setopt(c, o, v); }
CURLcode bn_curl_set_pointer(CURL *c, CURLoption o, void *v) { return curl_easy_setopt(c, o, v); }
CURLcode bn_curl_set_write(CURL *c, CURLoption o, bn_curl_write_cb f) { return curl_easy_setopt(c, o, f); }
CURLcode bn_curl_set_progress(CURL *c, bn_curl_progress_cb f) { return curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, f); }

long bn_curl_response_code(CURL *c) {
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    return code;
}
