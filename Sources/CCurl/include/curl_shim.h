/*
 * curl_shim.h — the few libcurl calls `bitnetd pull` makes, as non-variadic functions Swift can
 * call (curl_easy_setopt and curl_easy_getinfo are variadic C).
 */
#ifndef BITNETD_CURL_SHIM_H
#define BITNETD_CURL_SHIM_H

#include <curl/curl.h>

typedef size_t (*bn_curl_write_cb)(char *data, size_t size, size_t nmemb, void *user);
typedef int (*bn_curl_progress_cb)(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);

CURLcode bn_curl_set_long(CURL *c, CURLoption o, long v);
CURLcode bn_curl_set_string(CURL *c, CURLoption o, const char *v);
CURLcode bn_curl_set_pointer(CURL *c, CURLoption o, void *v);
CURLcode bn_curl_set_write(CURL *c, CURLoption o, bn_curl_write_cb f);
CURLcode bn_curl_set_progress(CURL *c, bn_curl_progress_cb f);
long bn_curl_response_code(CURL *c);

#endif
