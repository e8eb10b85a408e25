// Loaded from a file, never inline: the Content-Security-Policy allows only this origin.
// Render each operation of the OpenAPI document: method, path, summary, schemas.
fetch("/api/v1/openapi.json").then(r => r.json()).then(spec => {
  const root = document.getElementById("ops");
  root.textContent = "";
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!op || typeof op !== "object" || !op.responses) continue;
      const box = document.createElement("details");
      box.className = "op";
      const head = document.createElement("summary");
      head.innerHTML = `<span class="method"></span><span class="path"></span> — <span class="sum"></span>`;
      head.querySelector(".method").textContent = method.toUpperCase();
      head.querySelector(".path").textContent = path;
      head.querySelector(".sum").textContent = op.summary || "";
      const body = document.createElement("pre");
      body.textContent = JSON.stringify({parameters: op.parameters, requestBody: op.requestBody,
                                         responses: op.responses}, null, 2);
      box.append(head, body);
      root.append(box);
    }
  }
  const schemas = document.createElement("details");
  schemas.innerHTML = "<summary>Schemas</summary>";
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify((spec.components || {}).schemas || {}, null, 2);
  schemas.append(pre);
  root.append(schemas);
}).catch(err => { document.getElementById("ops").textContent = "Could not load the document: " + err; });
