// The last uploaded query images, kept in this browser (IndexedDB) by content hash, so a
// reload of /?q=sha256:<hash> finds its image again. A link shared to another device names
// an image that device does not hold: the page then asks for it.
const DB = 'imgsearch'
const STORE = 'queries'
const KEEP = 5

function open() {
  return new Promise((resolve, reject) => {
    if (typeof indexedDB === 'undefined') {
      reject(new Error('no IndexedDB'))
      return
    }
    const request = indexedDB.open(DB, 1)
    request.onupgradeneeded = () => request.result.createObjectStore(STORE)
    request.onsuccess = () => resolve(request.result)
    request.onerror = () => reject(request.error)
  })
}

function run(mode, fn) {
  return open().then(
    (db) =>
      new Promise((resolve, reject) => {
        const tx = db.transaction(STORE, mode)
        const result = fn(tx.objectStore(STORE))
        tx.oncomplete = () => resolve(result?.result)
        tx.onerror = () => reject(tx.error)
      }),
  )
}

/** Keeps `file` under `sha256` (the newest KEEP files stay). Never throws. */
export async function keepQuery(sha256, file) {
  try {
    const record = { blob: file, name: file.name, type: file.type, at: Date.now() }
    await run('readwrite', (store) => store.put(record, sha256))
    const all = await run('readonly', (store) => store.getAll())
    const keys = await run('readonly', (store) => store.getAllKeys())
    const old = keys
      .map((key, i) => [key, all[i].at])
      .sort((a, b) => b[1] - a[1])
      .slice(KEEP)
    if (old.length) await run('readwrite', (store) => old.forEach(([key]) => store.delete(key)))
  } catch {
    // Private mode or no storage: the link then works on this page load only.
  }
}

/** The File kept under `sha256`, or null. */
export async function findQuery(sha256) {
  try {
    const record = await run('readonly', (store) => store.get(sha256))
    if (!record) return null
    return new File([record.blob], record.name || 'query', { type: record.type || '' })
  } catch {
    return null
  }
}
