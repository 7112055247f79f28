def shift_letter(ch, k):
    if ch.isalpha():
        base = ord("a") if ch.islower() else ord("A")
        return chr((ord(ch) - base + k) % 26 + base)
    return ch


def caesar(message, k):
    return "".join(shift_letter(c, k) for c in message)


print(caesar("Hello, World", 3))
