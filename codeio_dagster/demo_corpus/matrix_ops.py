def transpose(m):
    return [list(row) for row in zip(*m)]


def matmul(a, b):
    bt = transpose(b)
    return [[sum(x * y for x, y in zip(row, col)) for col in bt] for row in a]


print(matmul([[1, 2], [3, 4]], [[5, 6], [7, 8]]))
