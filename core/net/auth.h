/* aletheia: Google OAuth2 access tokens for Firestore and GCS (application-default credentials). */
#ifndef ALETHEIA_AUTH_H
#define ALETHEIA_AUTH_H

#include "aletheia/common.h"

/* The OAuth2 scope that serves both Firestore and GCS. */
#define AL_AUTH_SCOPE_CLOUD_PLATFORM "https://www.googleapis.com/auth/cloud-platform"

typedef struct al_auth al_auth;

/* Finds credentials in Google's default order: GOOGLE_APPLICATION_CREDENTIALS (service_account or
 * authorized_user JSON file), then the gcloud application-default file
 * ($CLOUDSDK_CONFIG or ~/.config/gcloud, /application_default_credentials.json), then the GCE
 * metadata server (metadata.google.internal, or GCE_METADATA_HOST; probed with a short timeout,
 * skipped when NO_GCE_CHECK=True). scope is space-separated; NULL means cloud-platform. No token
 * is fetched yet. Fails with AL_ENOTFOUND (nothing found, or a named file is missing), AL_EACCES
 * (unreadable) or AL_EINVAL (malformed), with a one-line message naming the file or variable. */
int al_auth_new(al_auth **out, const char *scope);
/* A valid access token, malloc'd for the caller. Cached and shared between threads; fetched
 * again when less than 5 minutes remain. AL_EACCES when the token endpoint refuses the
 * credentials, AL_EIO for network or server failures. Tokens never appear in messages. */
int al_auth_token(char **out, al_auth *a);
/* Forgets the cached token if it is still token (the server refused it), so the next
 * al_auth_token fetches a new one; a token already replaced by another thread is kept. */
void al_auth_invalidate(al_auth *a, const char *token);
/* "service_account", "authorized_user" or "metadata". Borrowed. */
const char *al_auth_kind(al_auth *a);
/* The authorized_user file's quota_project_id (to send as x-goog-user-project), or NULL. */
const char *al_auth_quota_project(al_auth *a);
void al_auth_free(al_auth *a);

#endif
