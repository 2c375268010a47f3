/*
 * TEST DOUBLE of computecore.dll (the Host Compute Service API) for hako's contract test
 * (crates/hako-hcs/tests/hcs_contract.rs). It is not HCS: it starts nothing. It records every
 * Hcs* call hako makes, with its arguments, as one JSON line in the file named by
 * HAKO_HCS_DOUBLE_LOG, and answers from the script named by HAKO_HCS_DOUBLE_SCRIPT.
 *
 * Script lines (later lines win): `NAME MODE HRESULT [DOCUMENT]`
 *   NAME      an Hcs* function, e.g. HcsStartComputeSystem
 *   MODE      `sync`: the call itself returns HRESULT (the operation never starts);
 *             `async`: the call returns S_OK and HRESULT/DOCUMENT are the operation's result,
 *             delivered by HcsWaitForOperationResult[AndProcessInfo]; for the wait functions
 *             (HcsWaitForProcessExit, HcsWaitForComputeSystemExit) and the service calls
 *             the function's own result
 *   DOCUMENT  the rest of the line: the result document (JSON), optional
 * Unscripted calls succeed with an empty document. A process whose command line contains
 * `wait-for-signal` runs until it is signalled or terminated or its system stops; then (and
 * at once for any other process) an unscripted HcsWaitForProcessExit answers S_OK with
 * {"Exited":true,"ExitCode":N}, N = 1 for a stopped process, 0 for one that ended by itself.
 * An unscripted HcsWaitForComputeSystemExit blocks until the system is shut down or terminated. Handles are
 * never freed (a closed handle is only marked), so a late call cannot touch freed memory.
 *
 * Built by scripts/check-windows with MinGW-w64 and put in the throwaway Wine prefix's
 * System32 for the contract test only; Wine has no computecore.dll of its own.
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __declspec(dllexport)

typedef struct {
    int kind; /* 1 operation, 2 system, 3 process */
    int id;
    HRESULT result;
    WCHAR *document; /* the operation's result, LocalAlloc'd copy made at wait */
    char doc_utf8[8192];
    HANDLE exited;          /* systems and processes: set when stopped (manual reset) */
    void *system;           /* processes: their compute system */
    int blocks;             /* processes: run until stopped (command line has wait-for-signal) */
} Handle;

/* Every process made, so that stopping a system stops its processes. */
static Handle *processes[1024];
static int process_count;

static CRITICAL_SECTION lock;
static int next_id = 1;

/* --- log ---------------------------------------------------------------------------------- */

static void append_escaped(char *out, size_t cap, const char *s) {
    size_t n = strlen(out);
    for (; *s && n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = 0;
}

static void utf8(const WCHAR *w, char *out, int cap) {
    out[0] = 0;
    if (w == NULL) return;
    if (WideCharToMultiByte(CP_UTF8, 0, w, -1, out, cap, NULL, NULL) == 0) out[0] = 0;
}

/* One JSON line: {"call":NAME, then `fields` (already JSON, may be empty)}. */
static void record(const char *name, const char *fields) {
    char path[MAX_PATH];
    DWORD n = GetEnvironmentVariableA("HAKO_HCS_DOUBLE_LOG", path, sizeof path);
    if (n == 0 || n >= sizeof path) return;
    EnterCriticalSection(&lock);
    FILE *f = fopen(path, "ab");
    if (f) {
        fprintf(f, "{\"call\":\"%s\"%s%s}\n", name, fields[0] ? "," : "", fields);
        fclose(f);
    }
    LeaveCriticalSection(&lock);
}

static void field_str(char *out, size_t cap, const char *key, const WCHAR *value) {
    static char tmp[65536];
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "%s\"%s\":", n ? "," : "", key);
    if (value == NULL) {
        strncat(out, "null", cap - strlen(out) - 1);
        return;
    }
    utf8(value, tmp, sizeof tmp);
    strncat(out, "\"", cap - strlen(out) - 1);
    append_escaped(out, cap, tmp);
    strncat(out, "\"", cap - strlen(out) - 1);
}

static void field_int(char *out, size_t cap, const char *key, long long value) {
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "%s\"%s\":%lld", n ? "," : "", key, value);
}

static void field_hex(char *out, size_t cap, const char *key, HRESULT value) {
    size_t n = strlen(out);
    snprintf(out + n, cap - n, "%s\"%s\":\"0x%08lx\"", n ? "," : "", key, (unsigned long)value);
}

static int hid(void *h) { return h ? ((Handle *)h)->id : 0; }

/* --- script ------------------------------------------------------------------------------- */

/* The scripted answer for `name`: mode ('s' or 'a'), HRESULT and document. */
static void answer(const char *name, char *mode, HRESULT *hr, char *doc, size_t cap) {
    char path[MAX_PATH], line[8192];
    *mode = 'a';
    *hr = S_OK;
    doc[0] = 0;
    DWORD n = GetEnvironmentVariableA("HAKO_HCS_DOUBLE_SCRIPT", path, sizeof path);
    if (n == 0 || n >= sizeof path) return;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        char fname[128], fmode[16];
        unsigned long code;
        int used = 0;
        line[strcspn(line, "\r\n")] = 0;
        if (sscanf(line, "%127s %15s %lx %n", fname, fmode, &code, &used) < 3) continue;
        if (strcmp(fname, name) != 0) continue;
        *mode = fmode[0] == 's' ? 's' : 'a';
        *hr = (HRESULT)code;
        strncpy(doc, used ? line + used : "", cap - 1);
        doc[cap - 1] = 0;
    }
    fclose(f);
}

/* Whether the script has a line for `name`. */
static int scripted(const char *name) {
    char mode, doc[16];
    HRESULT hr;
    answer(name, &mode, &hr, doc, sizeof doc);
    return mode == 's' || hr != S_OK || doc[0];
}

static WCHAR *local_wide(const char *s) {
    int n = MultiByteToWideChar(CP_UTF8, 0, s, -1, NULL, 0);
    WCHAR *w = (WCHAR *)LocalAlloc(LMEM_FIXED, (SIZE_T)n * sizeof(WCHAR));
    if (w) MultiByteToWideChar(CP_UTF8, 0, s, -1, w, n);
    return w;
}

static Handle *new_handle(int kind) {
    Handle *h = (Handle *)calloc(1, sizeof(Handle));
    EnterCriticalSection(&lock);
    h->id = next_id++;
    LeaveCriticalSection(&lock);
    h->kind = kind;
    if (kind != 1) h->exited = CreateEventA(NULL, TRUE, FALSE, NULL);
    if (kind == 3) {
        EnterCriticalSection(&lock);
        if (process_count < 1024) processes[process_count++] = h;
        LeaveCriticalSection(&lock);
    }
    return h;
}

/* Marks `h` (a system or a process) stopped; a system's processes stop with it. */
static void stop(Handle *h) {
    int i;
    if (h == NULL) return;
    SetEvent(h->exited);
    if (h->kind != 2) return;
    EnterCriticalSection(&lock);
    for (i = 0; i < process_count; i++)
        if (processes[i]->system == h) SetEvent(processes[i]->exited);
    LeaveCriticalSection(&lock);
}

/* Starts an asynchronous call on `op`: records it, and returns the call's own HRESULT. */
static HRESULT start(const char *name, void *op, char *fields, size_t cap) {
    char mode, doc[8192];
    HRESULT hr;
    answer(name, &mode, &hr, doc, sizeof doc);
    field_hex(fields, cap, "answer", hr);
    /* Whether the operation started: a synchronous failure never starts it. */
    field_int(fields, cap, "started", mode != 's' || hr >= 0);
    record(name, fields);
    if (mode == 's') return hr;
    if (op) {
        ((Handle *)op)->result = hr;
        strncpy(((Handle *)op)->doc_utf8, doc, sizeof(((Handle *)op)->doc_utf8) - 1);
    }
    return S_OK;
}

/* --- operations --------------------------------------------------------------------------- */

EXPORT void *WINAPI HcsCreateOperation(const void *context, void *callback) {
    Handle *op = new_handle(1);
    char f[256] = "";
    field_int(f, sizeof f, "operation", op->id);
    field_int(f, sizeof f, "callback", callback != NULL);
    record("HcsCreateOperation", f);
    (void)context;
    return op;
}

EXPORT void WINAPI HcsCloseOperation(void *op) {
    char f[128] = "";
    field_int(f, sizeof f, "operation", hid(op));
    record("HcsCloseOperation", f);
}

EXPORT HRESULT WINAPI HcsCancelOperation(void *op) {
    char f[128] = "";
    field_int(f, sizeof f, "operation", hid(op));
    record("HcsCancelOperation", f);
    return S_OK;
}

EXPORT HRESULT WINAPI HcsWaitForOperationResult(void *op, DWORD timeout, WCHAR **result) {
    Handle *h = (Handle *)op;
    char f[256] = "";
    field_int(f, sizeof f, "operation", hid(op));
    field_hex(f, sizeof f, "answer", h->result);
    record("HcsWaitForOperationResult", f);
    (void)timeout;
    if (result) *result = h->doc_utf8[0] ? local_wide(h->doc_utf8) : NULL;
    return h->result;
}

typedef struct {
    DWORD ProcessId;
    DWORD Reserved;
    HANDLE StdInput;
    HANDLE StdOutput;
    HANDLE StdError;
} PROCESS_INFO;

EXPORT HRESULT WINAPI HcsWaitForOperationResultAndProcessInfo(void *op, DWORD timeout, PROCESS_INFO *info,
                                                              WCHAR **result) {
    Handle *h = (Handle *)op;
    char f[256] = "";
    field_int(f, sizeof f, "operation", hid(op));
    field_hex(f, sizeof f, "answer", h->result);
    record("HcsWaitForOperationResultAndProcessInfo", f);
    (void)timeout;
    if (info) {
        memset(info, 0, sizeof *info);
        if (h->result >= 0) info->ProcessId = 4242;
    }
    if (result) *result = h->doc_utf8[0] ? local_wide(h->doc_utf8) : NULL;
    return h->result;
}

/* --- compute systems ---------------------------------------------------------------------- */

EXPORT HRESULT WINAPI HcsCreateComputeSystem(const WCHAR *id, const WCHAR *configuration, void *op,
                                             const void *sd, void **system) {
    static char f[70000];
    HRESULT hr;
    Handle *s = new_handle(2);
    f[0] = 0;
    field_str(f, sizeof f, "id", id);
    field_str(f, sizeof f, "document", configuration);
    field_int(f, sizeof f, "operation", hid(op));
    field_int(f, sizeof f, "system", s->id);
    field_int(f, sizeof f, "security_descriptor", sd != NULL);
    hr = start("HcsCreateComputeSystem", op, f, sizeof f);
    if (hr < 0) {
        *system = NULL;
        return hr;
    }
    *system = s;
    return hr;
}

EXPORT HRESULT WINAPI HcsOpenComputeSystem(const WCHAR *id, DWORD access, void **system) {
    char f[1024] = "", mode, doc[64];
    HRESULT hr;
    field_str(f, sizeof f, "id", id);
    answer("HcsOpenComputeSystem", &mode, &hr, doc, sizeof doc);
    if (hr < 0) {
        field_hex(f, sizeof f, "answer", hr);
        record("HcsOpenComputeSystem", f);
        *system = NULL;
        return hr;
    }
    Handle *s = new_handle(2);
    field_int(f, sizeof f, "system", s->id);
    field_hex(f, sizeof f, "answer", hr);
    record("HcsOpenComputeSystem", f);
    (void)access;
    *system = s;
    return S_OK;
}

EXPORT void WINAPI HcsCloseComputeSystem(void *system) {
    char f[128] = "";
    field_int(f, sizeof f, "system", hid(system));
    record("HcsCloseComputeSystem", f);
}

#define SYSTEM_CALL(NAME, STOPS)                                                                  \
    EXPORT HRESULT WINAPI NAME(void *system, void *op, const WCHAR *options) {                    \
        static char f[70000];                                                                     \
        HRESULT hr;                                                                               \
        f[0] = 0;                                                                                 \
        field_int(f, sizeof f, "system", hid(system));                                            \
        field_int(f, sizeof f, "operation", hid(op));                                             \
        field_str(f, sizeof f, "options", options);                                               \
        hr = start(#NAME, op, f, sizeof f);                                                       \
        if (STOPS && hr >= 0 && ((Handle *)op)->result >= 0) stop((Handle *)system);              \
        return hr;                                                                                \
    }

SYSTEM_CALL(HcsStartComputeSystem, 0)
SYSTEM_CALL(HcsShutDownComputeSystem, 1)
SYSTEM_CALL(HcsTerminateComputeSystem, 1)
SYSTEM_CALL(HcsPauseComputeSystem, 0)
SYSTEM_CALL(HcsResumeComputeSystem, 0)
SYSTEM_CALL(HcsGetComputeSystemProperties, 0)

EXPORT HRESULT WINAPI HcsModifyComputeSystem(void *system, void *op, const WCHAR *configuration, HANDLE identity) {
    static char f[70000];
    f[0] = 0;
    field_int(f, sizeof f, "system", hid(system));
    field_int(f, sizeof f, "operation", hid(op));
    field_str(f, sizeof f, "options", configuration);
    field_int(f, sizeof f, "identity", identity != NULL);
    return start("HcsModifyComputeSystem", op, f, sizeof f);
}

/* The wait functions: the scripted answer is the result (async mode is the same here). */
static HRESULT wait_answer(const char *name, const char *key, void *h, WCHAR **result) {
    char f[256] = "", mode, doc[8192];
    HRESULT hr;
    if (!scripted(name)) {
        int blocks = ((Handle *)h)->kind == 2 || ((Handle *)h)->blocks;
        if (blocks) WaitForSingleObject(((Handle *)h)->exited, INFINITE);
        strcpy(doc, blocks ? "{\"Exited\":true,\"ExitCode\":1}" : "{\"Exited\":true,\"ExitCode\":0}");
        hr = S_OK;
    } else {
        answer(name, &mode, &hr, doc, sizeof doc);
    }
    field_int(f, sizeof f, key, hid(h));
    field_hex(f, sizeof f, "answer", hr);
    record(name, f);
    if (result) *result = doc[0] ? local_wide(doc) : NULL;
    return hr;
}

EXPORT HRESULT WINAPI HcsWaitForComputeSystemExit(void *system, DWORD timeout, WCHAR **result) {
    (void)timeout;
    return wait_answer("HcsWaitForComputeSystemExit", "system", system, result);
}

/* --- processes ---------------------------------------------------------------------------- */

EXPORT HRESULT WINAPI HcsCreateProcess(void *system, const WCHAR *parameters, void *op, const void *sd,
                                       void **process) {
    static char f[70000];
    HRESULT hr;
    Handle *p = new_handle(3);
    p->system = system;
    f[0] = 0;
    field_int(f, sizeof f, "system", hid(system));
    field_str(f, sizeof f, "document", parameters);
    p->blocks = strstr(f, "wait-for-signal") != NULL;
    field_int(f, sizeof f, "operation", hid(op));
    field_int(f, sizeof f, "process", p->id);
    (void)sd;
    hr = start("HcsCreateProcess", op, f, sizeof f);
    if (hr < 0) {
        *process = NULL;
        return hr;
    }
    *process = p;
    return hr;
}

EXPORT HRESULT WINAPI HcsOpenProcess(void *system, DWORD pid, DWORD access, void **process) {
    char f[256] = "";
    Handle *p = new_handle(3);
    p->system = system;
    p->blocks = 1;
    field_int(f, sizeof f, "system", hid(system));
    field_int(f, sizeof f, "pid", pid);
    field_int(f, sizeof f, "process", p->id);
    record("HcsOpenProcess", f);
    (void)access;
    *process = p;
    return S_OK;
}

EXPORT void WINAPI HcsCloseProcess(void *process) {
    char f[128] = "";
    field_int(f, sizeof f, "process", hid(process));
    record("HcsCloseProcess", f);
}

#define PROCESS_CALL(NAME, STOPS)                                                                 \
    EXPORT HRESULT WINAPI NAME(void *process, void *op, const WCHAR *options) {                   \
        char f[4096] = "";                                                                        \
        HRESULT hr;                                                                               \
        field_int(f, sizeof f, "process", hid(process));                                          \
        field_int(f, sizeof f, "operation", hid(op));                                             \
        field_str(f, sizeof f, "options", options);                                               \
        hr = start(#NAME, op, f, sizeof f);                                                       \
        if (STOPS && hr >= 0 && ((Handle *)op)->result >= 0) stop((Handle *)process);             \
        return hr;                                                                                \
    }

PROCESS_CALL(HcsSignalProcess, 1)
PROCESS_CALL(HcsTerminateProcess, 1)
PROCESS_CALL(HcsModifyProcess, 0)

EXPORT HRESULT WINAPI HcsGetProcessInfo(void *process, void *op) {
    char f[256] = "";
    field_int(f, sizeof f, "process", hid(process));
    field_int(f, sizeof f, "operation", hid(op));
    return start("HcsGetProcessInfo", op, f, sizeof f);
}

EXPORT HRESULT WINAPI HcsWaitForProcessExit(void *process, DWORD timeout, WCHAR **result) {
    (void)timeout;
    return wait_answer("HcsWaitForProcessExit", "process", process, result);
}

/* --- service calls ------------------------------------------------------------------------ */

static HRESULT service(const char *name, const char *key, const WCHAR *a, const WCHAR *b, WCHAR **result) {
    static char f[70000];
    char mode, doc[8192];
    HRESULT hr;
    f[0] = 0;
    field_str(f, sizeof f, key, a);
    if (b) field_str(f, sizeof f, "path", b);
    answer(name, &mode, &hr, doc, sizeof doc);
    field_hex(f, sizeof f, "answer", hr);
    record(name, f);
    if (result) *result = doc[0] ? local_wide(doc) : NULL;
    return hr;
}

EXPORT HRESULT WINAPI HcsGrantVmAccess(const WCHAR *vm, const WCHAR *path) {
    return service("HcsGrantVmAccess", "vm", vm, path, NULL);
}

EXPORT HRESULT WINAPI HcsRevokeVmAccess(const WCHAR *vm, const WCHAR *path) {
    return service("HcsRevokeVmAccess", "vm", vm, path, NULL);
}

EXPORT HRESULT WINAPI HcsModifyServiceSettings(const WCHAR *settings, WCHAR **result) {
    return service("HcsModifyServiceSettings", "settings", settings, NULL, result);
}

EXPORT HRESULT WINAPI HcsGetServiceProperties(const WCHAR *query, WCHAR **result) {
    return service("HcsGetServiceProperties", "query", query, NULL, result);
}

BOOL WINAPI DllMain(HINSTANCE dll, DWORD reason, LPVOID reserved) {
    (void)dll;
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) InitializeCriticalSection(&lock);
    return TRUE;
}
