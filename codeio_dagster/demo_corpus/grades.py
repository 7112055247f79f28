scores = {"ana": [90, 85, 77], "ben": [60, 72, 58], "cy": [88, 94, 91]}


def letter(avg):
    if avg >= 90:
        return "A"
    if avg >= 80:
        return "B"
    if avg >= 70:
        return "C"
    return "F"


for name, marks in scores.items():
    avg = sum(marks) / len(marks)
    print(name, round(avg, 1), letter(avg))
