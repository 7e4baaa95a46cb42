// Talking to the plugin's routes and to the TensorBoard page around the tab.

import { state } from "./common.js";

export async function fetchJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

// -- IPC with the TensorBoard page: answer its "data reloaded" ----------------

export function connectToHost(onReload) {
  if (window.parent === window) return;
  try {
    const channel = new MessageChannel();
    channel.port1.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (!message || message.isReply) return;
      if (message.type === "experimental.DataReloaded") onReload();
      channel.port1.postMessage(JSON.stringify({
        type: message.type, id: message.id, payload: null, error: null, isReply: true,
      }));
    };
    window.parent.postMessage("experimental.bootstrap", "*", [channel.port2]);
  } catch (e) {
    // Not embedded in TensorBoard (or a browser without MessageChannel): polling still works.
  }
}

// -- data ---------------------------------------------------------------------

export async function series(run, tag) {
  const key = `${run}\u0000${tag}`;
  if (!state.seriesCache.has(key)) {
    state.seriesCache.set(key, fetchJson(`./series?run=${encodeURIComponent(run)}&tag=${encodeURIComponent(tag)}`));
  }
  return state.seriesCache.get(key);
}
