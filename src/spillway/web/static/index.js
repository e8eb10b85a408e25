// Loaded from a file, never inline: the Content-Security-Policy allows only this origin.
// The first page of the catalog: served by nginx straight from memcached when hot.
fetch("/api/v1/products?page=1&per_page=20").then(r => r.json()).then(page => {
  const list = document.getElementById("products");
  list.textContent = "";
  for (const product of page.items) {
    const item = document.createElement("li");
    const price = (product.price_cents / 100).toFixed(2);
    item.innerHTML = "<strong></strong> <span class=price></span><br><small></small>";
    item.querySelector("strong").textContent = product.name;
    item.querySelector(".price").textContent = price;
    item.querySelector("small").textContent = product.description;
    list.append(item);
  }
  if (!page.items.length) list.innerHTML = "<li>No products yet: <code>spillway seed-demo</code> adds some.</li>";
}).catch(() => {
  document.getElementById("products").innerHTML = "<li>The catalog is unavailable; retry shortly.</li>";
});
