/*
 * TEST DOUBLE of vmcompute.dll's NameToGuid for hako's contract test: a fixed GUID derived
 * from the name (FNV-1a), so layer ids are stable. Not the real derivation; it records nothing.
 */
#include <windows.h>

__declspec(dllexport) HRESULT WINAPI NameToGuid(const WCHAR *name, GUID *guid) {
    unsigned long long h = 1469598103934665603ULL;
    int i;
    if (name == NULL || guid == NULL) return E_INVALIDARG;
    for (; *name; name++) h = (h ^ (unsigned long long)*name) * 1099511628211ULL;
    guid->Data1 = (unsigned long)(h >> 32);
    guid->Data2 = (unsigned short)(h >> 16);
    guid->Data3 = (unsigned short)h;
    for (i = 0; i < 8; i++) guid->Data4[i] = (unsigned char)(h >> (i * 8));
    return S_OK;
}
