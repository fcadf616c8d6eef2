// The prediction form: the chosen file is read here into the form's text field, so the form
// posts plain fields (the API takes multipart bodies only with an Authorization header).
(function () {
  "use strict";
  var input = document.getElementById("file");
  if (!input) { return; }
  input.addEventListener("change", function () {
    var file = input.files && input.files[0];
    if (!file) { return; }
    var reader = new FileReader();
    reader.onload = function () {
      document.getElementById("text").value = reader.result;
      document.getElementById("filename").value = file.name;
      input.dataset.loaded = file.name;
    };
    reader.readAsText(file);
  });
}());
