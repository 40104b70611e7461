/* Live length of the message a citizen receives (the answer plus NTBCare's wrapper), against
   Messenger's 2,000 characters. The page works without it: "Pratinjau" renders the same on the server. */
(function () {
  var area = document.getElementById("jawaban");
  var counter = document.getElementById("penghitung");
  if (!area || !counter) { return; }
  var overhead = parseInt(area.getAttribute("data-overhead"), 10) || 0;
  var limit = parseInt(area.getAttribute("data-limit"), 10) || 2000;
  function update() {
    var total = overhead + area.value.trim().length;
    var text = "Pesan untuk warga: " + total + " dari " + limit.toLocaleString("id-ID") + " karakter Messenger.";
    if (total > limit) {
      text += " Terlalu panjang untuk satu pesan: akan dikirim sebagai " + Math.ceil(total / limit) + " pesan.";
    }
    counter.textContent = text;
    counter.className = total > limit ? "counter over" : "counter";
  }
  area.addEventListener("input", update);
  update();
})();
