"""Guards: screening of inputs and retrieved documents (prompt injection, hidden text, encoded
payloads) before the model sees them."""
