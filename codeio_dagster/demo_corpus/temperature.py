def c_to_f(c):
    return c * 9 / 5 + 32


readings = [12.5, 18.0, 21.3, 15.8]
converted = [round(c_to_f(r), 2) for r in readings]
print("max", max(converted), "mean", sum(converted) / len(converted))
